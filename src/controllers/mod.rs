//! Controllers: the scheduler, the node lifecycle controller and the PV
//! binder. Each is a kube-rs watcher -> reflector -> reconcile loop (the
//! binder a periodic relist) over any apiserver (the bundled one or a
//! stock kube-apiserver): they speak only the Kubernetes API, never the
//! store underneath.

pub mod node_lifecycle;
pub mod pv_binder;
pub mod scheduler;
