//! deckhand's Job, CronJob, DaemonSet and StatefulSet controllers against
//! the stock kube-apiserver of ../shared/k8s (`$DECKHAND_K8S_DIR`) started
//! WITHOUT kube-controller-manager, so that only deckhand's controllers act.
//! No node runs: the test plays the kubelet, setting pod phases and exit
//! codes through the pods/status subresource. Skipped, saying so, when the
//! stock binaries are not there. Holds no lock of its own: run it under
//! /tmp/deckhand-integration.lock as the other integration tests.

mod common;
#[path = "controllers_batch/cronjobs.rs"]
mod cronjobs;
#[path = "controllers_batch/harness.rs"]
mod harness;
#[path = "controllers_batch/jobs.rs"]
mod jobs;
#[path = "controllers_batch/workloads.rs"]
mod workloads;
