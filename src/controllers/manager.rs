//! The controller manager: the workload, volume and node controllers of
//! this module run together against any apiserver, as kube-controller-manager
//! runs its own (`deckhand controller-manager`, and inside `deckhand up`).
//! Which ones run is kcm's `--controllers` list; a controller whose
//! resources the apiserver does not serve is skipped, saying so, as kcm
//! skips one whose API is disabled. A controller that fails is restarted
//! with back-off: one broken watch never stops the others.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::controllers::{
    cronjob, daemonset, deployment, disruption, endpoints, endpointslice, garbage_collector, job,
    node_lifecycle, pv_binder, replicaset, statefulset,
};

/// One controller: kcm's name for it, the older alias kcm also accepts,
/// whether `*` turns it on, and the resources (api version, plural) it
/// cannot work without.
#[derive(Debug)]
pub struct Entry {
    pub name: &'static str,
    pub alias: &'static str,
    pub default_on: bool,
    pub needs: &'static [(&'static str, &'static str)],
    /// One run of the controller until the shutdown.
    pub start: Start,
}

/// The shutdown every controller is given: a future that any number of
/// them may hold.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// Makes any future the manager's shutdown.
pub fn shutdown_on(f: impl Future<Output = ()> + Send + 'static) -> Shutdown {
    f.boxed().shared()
}

type Start = fn(kube::Client, &ManagerConfig, Shutdown) -> BoxFuture<'static, anyhow::Result<()>>;

pub const CONTROLLERS: &[Entry] = &[
    Entry {
        name: "job-controller",
        alias: "job",
        default_on: true,
        needs: &[("batch/v1", "jobs"), ("v1", "pods")],
        start: |c, cfg, s| job::run(c, cfg.job.clone(), s).boxed(),
    },
    Entry {
        name: "cronjob-controller",
        alias: "cronjob",
        default_on: true,
        needs: &[("batch/v1", "cronjobs"), ("batch/v1", "jobs")],
        start: |c, _, s| cronjob::run(c, s).boxed(),
    },
    Entry {
        name: "replicaset-controller",
        alias: "replicaset",
        default_on: true,
        needs: &[("apps/v1", "replicasets"), ("v1", "pods")],
        start: |c, _, s| replicaset::run(c, s).boxed(),
    },
    Entry {
        name: "deployment-controller",
        alias: "deployment",
        default_on: true,
        needs: &[("apps/v1", "deployments"), ("apps/v1", "replicasets")],
        start: |c, _, s| deployment::run(c, s).boxed(),
    },
    Entry {
        name: "daemonset-controller",
        alias: "daemonset",
        default_on: true,
        needs: &[
            ("apps/v1", "daemonsets"),
            ("apps/v1", "controllerrevisions"),
            ("v1", "pods"),
        ],
        start: |c, _, s| daemonset::run(c, s).boxed(),
    },
    Entry {
        name: "statefulset-controller",
        alias: "statefulset",
        default_on: true,
        needs: &[
            ("apps/v1", "statefulsets"),
            ("apps/v1", "controllerrevisions"),
            ("v1", "pods"),
        ],
        start: |c, _, s| statefulset::run(c, s).boxed(),
    },
    Entry {
        name: "endpoints-controller",
        alias: "endpoint",
        default_on: true,
        needs: &[("v1", "services"), ("v1", "pods"), ("v1", "endpoints")],
        start: |c, _, s| endpoints::run(c, s).boxed(),
    },
    Entry {
        name: "endpointslice-controller",
        alias: "endpointslice",
        default_on: true,
        needs: &[
            ("v1", "services"),
            ("v1", "pods"),
            ("discovery.k8s.io/v1", "endpointslices"),
        ],
        start: |c, _, s| endpointslice::run(c, s).boxed(),
    },
    Entry {
        name: "garbage-collector-controller",
        alias: "garbagecollector",
        default_on: true,
        needs: &[],
        start: |c, _, s| garbage_collector::run(c, s).boxed(),
    },
    Entry {
        name: "disruption-controller",
        alias: "disruption",
        default_on: true,
        needs: &[("policy/v1", "poddisruptionbudgets"), ("v1", "pods")],
        start: |c, _, s| disruption::run(c, s).boxed(),
    },
    Entry {
        name: "persistentvolume-binder-controller",
        alias: "persistentvolume-binder",
        default_on: true,
        needs: &[
            ("v1", "persistentvolumes"),
            ("v1", "persistentvolumeclaims"),
        ],
        start: |c, _, s| pv_binder::run(c, s).boxed(),
    },
    Entry {
        name: "node-lifecycle-controller",
        alias: "nodelifecycle",
        default_on: true,
        needs: &[("v1", "nodes"), ("coordination.k8s.io/v1", "leases")],
        start: |c, cfg, s| node_lifecycle::run(c, cfg.node_lifecycle.clone(), s).boxed(),
    },
];

/// What the controllers are given besides a client.
#[derive(Debug, Clone, Default)]
pub struct ManagerConfig {
    /// kcm's `--controllers`: `*` (the default set), a name to turn one on,
    /// `-name` to turn one off. Empty means `*`.
    pub controllers: Vec<String>,
    pub node_lifecycle: node_lifecycle::NodeLifecycleConfig,
    pub job: job::JobConfig,
}

fn entry(name: &str) -> Option<&'static Entry> {
    CONTROLLERS
        .iter()
        .find(|e| e.name == name || e.alias == name)
}

/// The controllers `--controllers` selects, in table order; an unknown
/// name is an error naming the known ones.
pub fn selected(spec: &[String]) -> anyhow::Result<Vec<&'static Entry>> {
    let spec: Vec<&str> = if spec.is_empty() {
        vec!["*"]
    } else {
        spec.iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let star = spec.contains(&"*");
    let mut on = Vec::new();
    for e in CONTROLLERS {
        let named = |n: &str| n == e.name || n == e.alias;
        let off = spec.iter().any(|s| s.strip_prefix('-').is_some_and(named));
        let asked = spec.iter().any(|s| named(s));
        if !off && (asked || (star && e.default_on)) {
            on.push(e);
        }
    }
    for s in &spec {
        let name = s.strip_prefix('-').unwrap_or(s);
        if name != "*" && entry(name).is_none() {
            let known: Vec<&str> = CONTROLLERS.iter().map(|e| e.name).collect();
            anyhow::bail!(
                "--controllers: unknown controller {name:?} (known: {})",
                known.join(", ")
            );
        }
    }
    Ok(on)
}

/// Whether the apiserver serves every resource `e` needs; retried until
/// discovery answers (the apiserver may still be starting).
async fn served(client: &kube::Client, e: &Entry) -> bool {
    for (api_version, plural) in e.needs {
        let mut delay = Duration::from_millis(200);
        let list = loop {
            let call = if api_version.contains('/') {
                client.list_api_group_resources(api_version).boxed()
            } else {
                client.list_core_api_resources(api_version).boxed()
            };
            match tokio::time::timeout(Duration::from_secs(10), call).await {
                Ok(Ok(list)) => break Some(list),
                // A group the server does not have: a 404, not worth a retry.
                Ok(Err(kube::Error::Api(status))) if status.code == 404 => break None,
                Ok(Err(err)) => tracing::debug!(error = %err, "discovery of {api_version}"),
                Err(_) => tracing::debug!("discovery of {api_version} timed out"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        };
        let has = list.is_some_and(|l| l.resources.iter().any(|r| r.name == *plural));
        if !has {
            tracing::info!(
                controller = e.name,
                "skipped: the apiserver does not serve {api_version} {plural}"
            );
            return false;
        }
    }
    true
}

/// Runs `e` until `shutdown`, restarting it with back-off (1 s doubling to
/// 30 s, reset after a run that lasted a minute) when it fails.
async fn supervise(
    e: &'static Entry,
    client: kube::Client,
    config: ManagerConfig,
    shutdown: Shutdown,
) {
    if !served(&client, e).await {
        return;
    }
    let mut delay = Duration::from_secs(1);
    loop {
        let began = tokio::time::Instant::now();
        let run = (e.start)(client.clone(), &config, shutdown.clone());
        let stopped = shutdown.clone();
        let result = tokio::select! {
            r = run => r,
            () = stopped => return,
        };
        match result {
            Ok(()) => return,
            Err(err) => {
                if began.elapsed() > Duration::from_secs(60) {
                    delay = Duration::from_secs(1);
                }
                tracing::warn!(controller = e.name, error = %format!("{err:#}"), retry_in = ?delay, "controller failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.clone() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Runs the selected controllers until `shutdown`. Fails only when
/// `--controllers` names an unknown controller.
pub async fn run(
    client: kube::Client,
    config: ManagerConfig,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let on = selected(&config.controllers)?;
    tracing::info!(
        controllers = %on.iter().map(|e| e.name).collect::<Vec<_>>().join(","),
        "controller manager started"
    );
    futures::future::join_all(
        on.into_iter()
            .map(|e| supervise(e, client.clone(), config.clone(), shutdown.clone())),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spec: &[&str]) -> Vec<&'static str> {
        let spec: Vec<String> = spec.iter().map(|s| s.to_string()).collect();
        selected(&spec).unwrap().iter().map(|e| e.name).collect()
    }

    #[test]
    fn the_default_set_is_every_default_on_controller() {
        let all: Vec<&str> = CONTROLLERS
            .iter()
            .filter(|e| e.default_on)
            .map(|e| e.name)
            .collect();
        assert_eq!(names(&[]), all);
        assert_eq!(names(&["*"]), all);
    }

    #[test]
    fn a_minus_turns_one_off_and_aliases_count() {
        let on = names(&["*", "-job", "-cronjob-controller"]);
        assert!(!on.contains(&"job-controller"));
        assert!(!on.contains(&"cronjob-controller"));
        assert!(on.contains(&"daemonset-controller"));
        assert_eq!(names(&["statefulset"]), vec!["statefulset-controller"]);
    }

    #[test]
    fn an_unknown_name_is_refused_naming_the_known_ones() {
        let err = selected(&["*".into(), "-bogus".into()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"bogus\""), "{msg}");
        assert!(msg.contains("job-controller"), "{msg}");
    }
}
