//! deckhand's ReplicaSet/ReplicationController and Deployment controllers against the
//! stock kube-apiserver of ../shared/k8s (`$DECKHAND_K8S_DIR`) started
//! WITHOUT kube-controller-manager, so that only deckhand's controllers
//! act. No node runs: the test plays the kubelet, setting pods Ready
//! through pods/status. Skipped, saying so, when the stock binaries are
//! not there. Run it under /tmp/deckhand-integration.lock as the others.

mod common;
#[path = "controllers_apps/deployments.rs"]
mod deployments;
#[allow(dead_code)] // shared with controllers_batch: not all of it is used here
#[path = "controllers_batch/harness.rs"]
mod harness;
#[path = "controllers_apps/replicasets.rs"]
mod replicasets;
