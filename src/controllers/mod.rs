//! Controllers: the scheduler and the node lifecycle controller. Each is a
//! kube-rs watcher -> reflector -> reconcile loop over any apiserver (the
//! bundled one or a stock kube-apiserver): they speak only the Kubernetes
//! API, never the store underneath.

pub mod node_lifecycle;
pub mod scheduler;
