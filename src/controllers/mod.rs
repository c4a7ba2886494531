//! Controllers: the scheduler, and kube-controller-manager's workload,
//! endpoint, garbage-collection, disruption, node lifecycle and PV binder
//! controllers, which `manager` runs together. Each is a kube-rs watcher -> reflector -> reconcile loop (the
//! binder relists on each change) over any apiserver (the bundled one or a
//! stock kube-apiserver): they speak only the Kubernetes API, never the
//! store underneath. The set-up they share (an event recorder named for
//! the component and this host, reflected watches, the handling of a
//! watch's items) is here.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbage_collector;
pub mod job;
pub mod manager;
pub mod node_lifecycle;
pub mod pv_binder;
pub mod replicaset;
pub mod scheduler;
pub mod statefulset;

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;

use futures::Stream;
use kube::Api;
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde::de::DeserializeOwned;

use crate::node::events::EventRecorder;

/// An event recorder reporting as `component` on this host, and the future
/// that posts what it records (poll it alongside the controller's loop).
pub fn component_events(
    client: kube::Client,
    component: &str,
) -> (EventRecorder, impl Future<Output = ()> + Send + use<>) {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    EventRecorder::for_component(client, component, &host)
}

/// A reflector over every object `api` lists: the store it fills and the
/// watch stream (with kube's default backoff) to poll.
pub fn reflected<K>(
    api: Api<K>,
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
)
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (store, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    (store, stream)
}

/// One item of a reflected watch of `what`: the event, none for an error
/// (logged; the watcher retries), or an error when the watch ended.
pub fn watch_item<K>(
    item: Option<Result<watcher::Event<K>, watcher::Error>>,
    what: &str,
) -> anyhow::Result<Option<watcher::Event<K>>> {
    match item {
        Some(Ok(ev)) => Ok(Some(ev)),
        Some(Err(err)) => {
            tracing::warn!(error = %err, "watching {what}");
            Ok(None)
        }
        None => anyhow::bail!("the {what} watch ended"),
    }
}
