//! The StatefulSet controller: pods with stable names `<set>-<ordinal>`,
//! hostname and subdomain (spec.serviceName), a PersistentVolumeClaim per
//! volumeClaimTemplate and ordinal (`<template>-<set>-<ordinal>`, created
//! before the pod and never deleted with it: the PV binder binds them),
//! OrderedReady and Parallel pod management, RollingUpdate with partition
//! and OnDelete, ControllerRevisions, and the status replica counts and
//! revisions. Left out: maxUnavailable for RollingUpdate (one pod at a
//! time), minReadySeconds, persistentVolumeClaimRetentionPolicy (claims are
//! always retained), ordinals.start, revision history clean-up.

pub mod plan;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::controllers;
use crate::controllers::daemonset::revision;
use crate::controllers::job::expect::Expectations;
use crate::controllers::job::pods as pod_state;
use crate::controllers::job::workqueue::{
    CallError, WorkQueue, call, controller_key, controller_uid, key_of,
};
use crate::controllers::job::write::{controller_ref, create_pod, delete_pod, object_event};
use crate::node::events::EventRecorder;
use plan::Step;

const TICK: Duration = Duration::from_secs(1);

/// The claims of ordinal `i`: (volume name, claim).
pub fn claims(sts: &StatefulSet, i: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let name = sts.metadata.name.as_deref().unwrap_or("");
    let spec = sts.spec.as_ref();
    let selector_labels = spec
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    spec.and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|tpl| {
            let volume = tpl.metadata.name.clone().unwrap_or_default();
            let mut claim = tpl;
            let labels = claim.metadata.labels.get_or_insert_default();
            labels.extend(selector_labels.clone());
            claim.metadata.name = Some(format!("{volume}-{name}-{i}"));
            claim.metadata.namespace = sts.metadata.namespace.clone();
            claim.status = None;
            (volume, claim)
        })
        .collect()
}

/// The pod of ordinal `i` from `template` (of revision `hash`).
pub fn new_pod(sts: &StatefulSet, template: PodTemplateSpec, i: i32, hash: &str) -> Pod {
    let set = sts.metadata.name.clone().unwrap_or_default();
    let name = format!("{set}-{i}");
    let mut pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    };
    let meta = &mut pod.metadata;
    meta.name = Some(name.clone());
    meta.generate_name = None;
    meta.namespace = sts.metadata.namespace.clone();
    meta.owner_references = Some(vec![controller_ref(
        "apps/v1",
        "StatefulSet",
        &sts.metadata,
    )]);
    let labels = meta.labels.get_or_insert_default();
    labels.insert(revision::HASH_LABEL.into(), hash.into());
    labels.insert("statefulset.kubernetes.io/pod-name".into(), name.clone());
    labels.insert("apps.kubernetes.io/pod-index".into(), i.to_string());
    let service = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(name);
        if service.is_some() {
            spec.subdomain = service;
        }
        let volumes = spec.volumes.get_or_insert_default();
        for (volume, claim) in claims(sts, i) {
            volumes.retain(|v| v.name != volume);
            volumes.push(Volume {
                name: volume,
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.metadata.name.unwrap_or_default(),
                    read_only: None,
                }),
                ..Default::default()
            });
        }
    }
    pod
}

struct Controller {
    client: kube::Client,
    events: EventRecorder,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    queue: WorkQueue,
    expect: Expectations,
}

impl Controller {
    fn owned_revisions(&self, key: &str) -> Vec<Arc<ControllerRevision>> {
        self.revisions
            .state()
            .into_iter()
            .filter(|r| controller_key(&r.metadata, "StatefulSet").as_deref() == Some(key))
            .collect()
    }

    async fn sync(&mut self, key: &str) -> Result<Option<Duration>, CallError> {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let Some(sts) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            self.expect.forget(key);
            return Ok(None);
        };
        if sts.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let owned: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| {
                controller_key(&p.metadata, "StatefulSet").as_deref() == Some(key)
                    && controller_uid(&p.metadata) == sts.metadata.uid.as_deref()
            })
            .collect();
        let now = Instant::now();
        let cached = |n: &str| {
            owned
                .iter()
                .find(|p| pod_state::name(p) == n)
                .map(|p| pod_state::deleting(p))
        };
        if !self
            .expect
            .satisfied(key, sts.metadata.resource_version.as_deref(), cached, now)
        {
            return Ok(Some(TICK));
        }
        let template = sts
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let collisions = sts.status.as_ref().and_then(|s| s.collision_count);
        let update = revision::template_hash(&template, collisions);
        let revisions = self.owned_revisions(key);
        let rev_hash = |r: &ControllerRevision| {
            r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(revision::HASH_LABEL))
                .cloned()
        };
        if !revisions
            .iter()
            .any(|r| rev_hash(r).as_deref() == Some(update.as_str()))
        {
            let number = revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
            let rev = revision::revision("StatefulSet", &sts.metadata, &template, &update, number);
            let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
            match call(
                format!("creating revision {number} of {key}"),
                api.create(&PostParams::default(), &rev),
            )
            .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some(409) => {}
                Err(e) => return Err(e),
            }
        }
        let current = sts
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref())
            .and_then(|r| r.strip_prefix(&format!("{name}-")))
            .map(String::from)
            .unwrap_or_else(|| update.clone());
        let current_template = revisions
            .iter()
            .find(|r| rev_hash(r).as_deref() == Some(current.as_str()))
            .and_then(|r| revision::template_of(r))
            .unwrap_or_else(|| template.clone());
        let refs: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
        let plan = plan::plan(&sts, &refs, &current, &update);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        for step in &plan.steps {
            match step {
                Step::Create(i, updated) => {
                    for (_, claim) in claims(&sts, *i) {
                        let claim_name = claim.metadata.name.clone().unwrap_or_default();
                        match call(
                            format!("creating claim {ns}/{claim_name}"),
                            pvcs.create(&PostParams::default(), &claim),
                        )
                        .await
                        {
                            Ok(_) => object_event(
                                &self.events,
                                "apps/v1",
                                "StatefulSet",
                                &sts.metadata,
                                "Normal",
                                "SuccessfulCreate",
                                format!(
                                    "create Claim {claim_name} Pod {name}-{i} in StatefulSet {name} success"
                                ),
                            ),
                            Err(e) if e.code() == Some(409) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    let (tpl, hash) = if *updated {
                        (template.clone(), &update)
                    } else {
                        (current_template.clone(), &current)
                    };
                    let pod = new_pod(&sts, tpl, *i, hash);
                    let created = match create_pod(&pods, &pod).await {
                        Ok(n) => n,
                        Err(e) if e.code() == Some(409) => continue,
                        Err(e) => return Err(e),
                    };
                    self.expect.created(key, &created, now);
                    object_event(
                        &self.events,
                        "apps/v1",
                        "StatefulSet",
                        &sts.metadata,
                        "Normal",
                        "SuccessfulCreate",
                        format!("create Pod {created} in StatefulSet {name} successful"),
                    );
                }
                Step::Delete(n) => {
                    if let Some(p) = owned.iter().find(|p| pod_state::name(p) == n) {
                        delete_pod(&pods, p).await?;
                        self.expect.deleted(key, n, now);
                        object_event(
                            &self.events,
                            "apps/v1",
                            "StatefulSet",
                            &sts.metadata,
                            "Normal",
                            "SuccessfulDelete",
                            format!("delete Pod {n} in StatefulSet {name} successful"),
                        );
                    }
                }
            }
        }
        if sts.status.as_ref() != Some(&plan.status) {
            let mut desired = StatefulSet::clone(&sts);
            desired.status = Some(plan.status.clone());
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
            call(
                format!("updating the status of statefulset {key}"),
                api.replace_status(name, &PostParams::default(), &desired),
            )
            .await?;
            self.expect
                .wrote(key, sts.metadata.resource_version.as_deref(), now);
        }
        Ok(None)
    }

    async fn work(&mut self) {
        for key in self.queue.take_due(Instant::now()) {
            match self.sync(&key).await {
                Ok(requeue) => {
                    self.queue.succeeded(&key);
                    if let Some(d) = requeue {
                        self.queue.add_at(&key, Instant::now() + d);
                    }
                }
                Err(err) => {
                    let wait = self.queue.failed(&key, Instant::now());
                    tracing::warn!(statefulset = %key, error = %err, ?wait, "statefulset sync failed; retrying");
                }
            }
        }
    }
}

/// Runs the StatefulSet controller until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (events, poster) = controllers::component_events(client.clone(), "statefulset-controller");
    let (sets, set_watch) = controllers::reflected(Api::<StatefulSet>::all(client.clone()));
    let (pods, pod_watch) = controllers::reflected(Api::<Pod>::all(client.clone()));
    let (revisions, rev_watch) =
        controllers::reflected(Api::<ControllerRevision>::all(client.clone()));
    let (mut set_watch, mut pod_watch, mut rev_watch) =
        (pin!(set_watch), pin!(pod_watch), pin!(rev_watch));
    let mut shutdown = pin!(shutdown);
    let mut poster = pin!(futures::FutureExt::fuse(poster));
    let mut c = Controller {
        client,
        events,
        sets,
        pods,
        revisions,
        queue: WorkQueue::default(),
        expect: Expectations::default(),
    };
    let mut synced = [false; 3];
    tracing::info!("statefulset controller started");
    loop {
        let wake = c
            .queue
            .next_due()
            .map(|t| t.min(Instant::now() + TICK))
            .unwrap_or_else(|| Instant::now() + TICK);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut poster => {}
            ev = set_watch.next() => if let Some(ev) = controllers::watch_item(ev, "statefulsets")? {
                match &ev {
                    watcher::Event::InitDone => synced[0] = true,
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
                        c.queue.changed(&key_of(&o.metadata), Instant::now());
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = pod_watch.next() => if let Some(ev) = controllers::watch_item(ev, "pods")? {
                match &ev {
                    watcher::Event::InitDone => synced[1] = true,
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p) => {
                        if let Some(key) = controller_key(&p.metadata, "StatefulSet") {
                            c.queue.changed(&key, Instant::now());
                        }
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = rev_watch.next() => if let Some(ev) = controllers::watch_item(ev, "controllerrevisions")? {
                synced[2] |= matches!(ev, watcher::Event::InitDone);
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if synced.iter().all(|s| *s) {
            c.work().await;
        }
    }
    tracing::info!("statefulset controller stopped");
    Ok(())
}
