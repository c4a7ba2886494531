//! deckhand's Endpoints, EndpointSlice, garbage collector and disruption
//! controllers against the stock kube-apiserver of ../shared/k8s
//! (`$DECKHAND_K8S_DIR`) started WITHOUT kube-controller-manager, so that
//! only deckhand's controllers act. No node runs: the test plays the
//! kubelet, setting pod IPs and readiness through pods/status. Skipped,
//! saying so, when the stock binaries are not there. Holds no lock of its
//! own: run it under /tmp/deckhand-integration.lock as the other
//! integration tests.

mod common;
#[path = "controllers_core/endpoints.rs"]
mod endpoints;
#[path = "controllers_core/gc.rs"]
mod gc;
#[path = "controllers_batch/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "controllers_core/kubelet.rs"]
mod kubelet;
#[path = "controllers_core/pdb.rs"]
mod pdb;
#[path = "controllers_core/slices.rs"]
mod slices;
