//! One reconcile of a Deployment (kube's syncDeployment): claim its
//! ReplicaSets, find or create the new one and keep its revision, then
//! either scale (a scaling event or a paused deployment), roll out
//! (RollingUpdate or Recreate), clean up old history once complete, and
//! write the status (with the deployment's revision annotation) through
//! the status subresource.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::plan::{self, rs_available, rs_replicas};
use super::{Controller, rollout, status};
use crate::controllers::job::pods as pod_state;
use crate::controllers::job::workqueue::{CallError, call, controller_uid};
use crate::controllers::job::write::{controller_ref, object_event};
use crate::controllers::scheduler::labels::selector_matches;

/// How soon a sync that found the cache behind its own writes is retried.
const STALE_RETRY: Duration = Duration::from_millis(200);
/// A write the cache has not shown after this long is not waited for.
const STALE_MAX: Duration = Duration::from_secs(10);

/// What the rollout did this sync.
struct Sync {
    /// The new set was created (NewReplicaSetCreated) or found.
    new_reason: Option<&'static str>,
}

impl Controller {
    pub(super) async fn sync(&mut self, key: &str) -> Result<Option<Duration>, CallError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let Some(d) = self.deployments.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let d: Deployment = (*d).clone();
        let mut sets = self.claim(&d).await?;
        if self.stale(&sets) {
            // Our last write to one of its sets is not in the cache yet:
            // a sync now would repeat it (and its event).
            return Ok(Some(STALE_RETRY));
        }
        let now = status::second(Timestamp::now());
        let mut s = Sync { new_reason: None };
        let mut new = plan::find_new(&d, &sets.iter().collect::<Vec<_>>()).map(name_of);
        if let Some(n) = &new {
            self.sync_revision(&d, &mut sets, n).await?;
        }
        if d.metadata.deletion_timestamp.is_none() {
            let refs: Vec<&ReplicaSet> = sets.iter().collect();
            if plan::paused(&d) || plan::scaling_event(&d, &refs) {
                let idx = new
                    .as_ref()
                    .and_then(|n| refs.iter().position(|rs| &name_of(rs) == n));
                let sizes = plan::scale(&d, &refs, idx);
                let sizes: Vec<(String, i32)> = sizes
                    .into_iter()
                    .map(|(i, n)| (name_of(refs[i]), n))
                    .collect();
                for (rs, n) in sizes {
                    self.scale(&d, &mut sets, &rs, n).await?;
                }
                if plan::paused(&d) {
                    self.cleanup(&d, &mut sets, new.as_deref()).await?;
                }
            } else if plan::recreate(&d) {
                self.recreate(&d, &mut sets, &mut new, &mut s).await?;
            } else {
                self.rolling(&d, &mut sets, &mut new, &mut s).await?;
            }
        }
        self.write_status(&d, &sets, new.as_deref(), &s, now).await
    }

    /// The deployment's ReplicaSets, oldest first: those it controls, and
    /// orphans its selector matches, adopted (kube's ReplicaSet
    /// ControllerRefManager; owned sets that stop matching are kept, not
    /// released).
    async fn claim(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, CallError> {
        let ns = d.metadata.namespace.as_deref().unwrap_or("default");
        let uid = d.metadata.uid.as_deref();
        let selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let selects_something = selector
            .match_labels
            .as_ref()
            .is_some_and(|m| !m.is_empty())
            || selector
                .match_expressions
                .as_ref()
                .is_some_and(|m| !m.is_empty());
        let mut out = Vec::new();
        for rs in self.replica_sets.state() {
            if rs.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            let owner = controller_uid(&rs.metadata);
            if owner.is_some() && owner == uid {
                out.push((*rs).clone());
                continue;
            }
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            if owner.is_none()
                && selects_something
                && rs.metadata.deletion_timestamp.is_none()
                && d.metadata.deletion_timestamp.is_none()
                && selector_matches(&selector, &labels)
                && let Some(adopted) = self.adopt(d, &rs).await?
            {
                out.push(adopted);
            }
        }
        out.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
                .then_with(|| plan::revision(a).cmp(&plan::revision(b)))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        Ok(out)
    }

    async fn adopt(
        &self,
        d: &Deployment,
        rs: &ReplicaSet,
    ) -> Result<Option<ReplicaSet>, CallError> {
        let owner = controller_ref("apps/v1", "Deployment", &d.metadata);
        let patch = json!({"metadata": {"ownerReferences": [owner], "uid": rs.metadata.uid}});
        let name = name_of(rs);
        match call(
            format!("adopting replicaset {name}"),
            self.rs_api(d)
                .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)),
        )
        .await
        {
            Ok(rs) => {
                tracing::info!(deployment = ?d.metadata.name, rs = %name, "adopted an orphan replica set");
                Ok(Some(rs))
            }
            Err(e) if matches!(e.code(), Some(404 | 409 | 422)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The existing new set gets revision max(old) + 1 (a rollout undo
    /// makes an old set new again) and the deployment's minReadySeconds.
    async fn sync_revision(
        &self,
        d: &Deployment,
        sets: &mut [ReplicaSet],
        new: &str,
    ) -> Result<(), CallError> {
        let next = sets
            .iter()
            .filter(|rs| name_of(rs) != new)
            .map(plan::revision)
            .max()
            .unwrap_or(0)
            + 1;
        let Some(rs) = sets.iter_mut().find(|rs| name_of(rs) == new) else {
            return Ok(());
        };
        let bump = plan::revision_bump(rs, next);
        let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let ready_differs = rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready;
        if bump.is_none() && !ready_differs {
            return Ok(());
        }
        let mut patch = json!({"spec": {"minReadySeconds": min_ready}});
        if let Some(a) = bump {
            patch["metadata"] = json!({"annotations": a});
        }
        let what = format!("updating the revision of replicaset {new}");
        let before = rs.clone();
        *rs = call(
            what,
            self.rs_api(d)
                .patch(new, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await?;
        self.wrote(&before, rs);
        Ok(())
    }

    /// Creates the new set with `replicas`; on a name taken by another
    /// template, counts a collision (the next hash differs) and fails.
    async fn create_new(
        &self,
        d: &Deployment,
        sets: &mut Vec<ReplicaSet>,
        replicas: i32,
    ) -> Result<String, CallError> {
        let next = sets.iter().map(plan::revision).max().unwrap_or(0) + 1;
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        let hash =
            crate::controllers::daemonset::revision::template_hash(&plan::template(d), collisions);
        let rs = plan::new_replica_set(d, &hash, next, replicas);
        let name = name_of(&rs);
        let api = self.rs_api(d);
        match call(
            format!("creating replicaset {name}"),
            api.create(&PostParams::default(), &rs),
        )
        .await
        {
            Ok(created) => {
                self.event(
                    d,
                    "Normal",
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {name} from 0 to {replicas}"),
                );
                sets.push(created);
                Ok(name)
            }
            Err(e) if e.code() == Some(409) => {
                let existing = call(format!("reading replicaset {name}"), api.get(&name)).await?;
                if controller_uid(&existing.metadata) == d.metadata.uid.as_deref()
                    && plan::same_template(&existing, &plan::template(d))
                {
                    sets.retain(|s| name_of(s) != name);
                    sets.push(existing);
                    return Ok(name);
                }
                let patch = json!({"status": {"collisionCount": collisions.unwrap_or(0) + 1}});
                let dname = name_of_d(d);
                call(
                    format!("counting a hash collision of deployment {dname}"),
                    self.deploy_api(d).patch_status(
                        &dname,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    ),
                )
                .await?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Scales one set, with kube's replica annotations and event.
    async fn scale(
        &self,
        d: &Deployment,
        sets: &mut [ReplicaSet],
        name: &str,
        to: i32,
    ) -> Result<(), CallError> {
        let Some(rs) = sets.iter_mut().find(|rs| name_of(rs) == name) else {
            return Ok(());
        };
        let from = rs_replicas(rs);
        let annotations: serde_json::Map<String, serde_json::Value> = plan::replica_annotations(d)
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        let patch = json!({"metadata": {"annotations": annotations}, "spec": {"replicas": to}});
        let what = format!("scaling replicaset {name} to {to}");
        let before = rs.clone();
        *rs = call(
            what,
            self.rs_api(d)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await?;
        self.wrote(&before, rs);
        if from != to {
            let dir = if to > from { "up" } else { "down" };
            self.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                format!("Scaled {dir} replica set {name} from {from} to {to}"),
            );
        }
        Ok(())
    }

    /// kube's rolloutRolling: the new set grows within maxSurge; when it
    /// did not, old sets shrink keeping replicas - maxUnavailable
    /// available; once complete, old history is cleaned up.
    async fn rolling(
        &self,
        d: &Deployment,
        sets: &mut Vec<ReplicaSet>,
        new: &mut Option<String>,
        s: &mut Sync,
    ) -> Result<(), CallError> {
        let want = plan::replicas(d);
        let (surge, max_unavailable) = plan::fenceposts(d);
        let all: i32 = sets.iter().map(rs_replicas).sum();
        let Some(n) = new.clone() else {
            let size = rollout::new_rs_replicas(want, surge, all, 0);
            *new = Some(self.create_new(d, sets, size).await?);
            s.new_reason = Some("NewReplicaSetCreated");
            return Ok(());
        };
        let Some(new_rs) = sets.iter().find(|rs| name_of(rs) == n) else {
            return Ok(());
        };
        let (size, available) = (rs_replicas(new_rs), rs_available(new_rs));
        let target = if size > want {
            want
        } else {
            rollout::new_rs_replicas(want, surge, all, size)
        };
        if target != size {
            self.scale(d, sets, &n, target).await?;
            return Ok(());
        }
        let old: Vec<rollout::OldSet> = sets
            .iter()
            .filter(|rs| name_of(rs) != n && rs_replicas(rs) > 0)
            .map(|rs| rollout::OldSet {
                name: name_of(rs),
                replicas: rs_replicas(rs),
                available: rs_available(rs),
            })
            .collect();
        let down = rollout::scale_down_old(want, max_unavailable, &old, target, available);
        if !down.is_empty() {
            for (name, to) in down {
                self.scale(d, sets, &name, to).await?;
            }
            return Ok(());
        }
        self.cleanup_if_complete(d, sets, &n).await
    }

    /// kube's rolloutRecreate: old sets to 0, then (their pods gone) the
    /// new set at full size.
    async fn recreate(
        &self,
        d: &Deployment,
        sets: &mut Vec<ReplicaSet>,
        new: &mut Option<String>,
        s: &mut Sync,
    ) -> Result<(), CallError> {
        let old: Vec<String> = sets
            .iter()
            .filter(|rs| Some(name_of(rs)) != *new && rs_replicas(rs) > 0)
            .map(name_of)
            .collect();
        if !old.is_empty() {
            for name in old {
                self.scale(d, sets, &name, 0).await?;
            }
            return Ok(());
        }
        if self.old_pods_running(d, sets, new.as_deref()) {
            return Ok(());
        }
        let want = plan::replicas(d);
        match new.clone() {
            None => {
                *new = Some(self.create_new(d, sets, want).await?);
                s.new_reason = Some("NewReplicaSetCreated");
            }
            Some(n) => {
                if sets
                    .iter()
                    .any(|rs| name_of(rs) == n && rs_replicas(rs) != want)
                {
                    self.scale(d, sets, &n, want).await?;
                    return Ok(());
                }
                self.cleanup_if_complete(d, sets, &n).await?;
            }
        }
        Ok(())
    }

    /// Pods of the old sets not yet gone (terminal ones do not count).
    fn old_pods_running(&self, d: &Deployment, sets: &[ReplicaSet], new: Option<&str>) -> bool {
        let ns = d.metadata.namespace.as_deref();
        let old: Vec<&str> = sets
            .iter()
            .filter(|rs| rs.metadata.name.as_deref() != new)
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        if sets
            .iter()
            .filter(|rs| rs.metadata.name.as_deref() != new)
            .any(|rs| rs.status.as_ref().is_some_and(|st| st.replicas > 0))
        {
            return true;
        }
        self.pods.state().iter().any(|p: &std::sync::Arc<Pod>| {
            p.metadata.namespace.as_deref() == ns
                && controller_uid(&p.metadata).is_some_and(|u| old.contains(&u))
                && !pod_state::terminal(p)
        })
    }

    async fn cleanup_if_complete(
        &self,
        d: &Deployment,
        sets: &mut Vec<ReplicaSet>,
        new: &str,
    ) -> Result<(), CallError> {
        let refs: Vec<&ReplicaSet> = sets.iter().collect();
        let new_rs = refs.iter().copied().find(|rs| name_of(rs) == new);
        let st = status::calculate(d, &refs, new_rs, Timestamp::now());
        if status::complete(d, &st) {
            self.cleanup(d, sets, Some(new)).await?;
        }
        Ok(())
    }

    /// Deletes old sets beyond revisionHistoryLimit (kube's
    /// cleanupDeployment), each with its uid and resourceVersion as
    /// preconditions so that a set scaled meanwhile is kept.
    async fn cleanup(
        &self,
        d: &Deployment,
        sets: &mut Vec<ReplicaSet>,
        new: Option<&str>,
    ) -> Result<(), CallError> {
        let old: Vec<&ReplicaSet> = sets
            .iter()
            .filter(|rs| rs.metadata.name.as_deref() != new)
            .collect();
        let doomed: Vec<ReplicaSet> = plan::history_to_delete(d, &old)
            .into_iter()
            .cloned()
            .collect();
        for rs in doomed {
            let name = name_of(&rs);
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: rs.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match call(
                format!("deleting old replicaset {name}"),
                self.rs_api(d).delete(&name, &dp),
            )
            .await
            {
                Ok(_) => {
                    tracing::info!(rs = %name, "deleted an old replica set beyond revisionHistoryLimit")
                }
                Err(e) if matches!(e.code(), Some(404 | 409)) => {}
                Err(e) => return Err(e),
            }
            sets.retain(|s| name_of(s) != name);
        }
        Ok(())
    }

    /// The status and the deployment's revision annotation, written when
    /// they changed; when to sync again for the progress deadline.
    async fn write_status(
        &self,
        d: &Deployment,
        sets: &[ReplicaSet],
        new: Option<&str>,
        s: &Sync,
        now: Timestamp,
    ) -> Result<Option<Duration>, CallError> {
        let refs: Vec<&ReplicaSet> = sets.iter().collect();
        let new_rs = new.and_then(|n| refs.iter().copied().find(|rs| name_of(rs) == n));
        let mut st = status::calculate(d, &refs, new_rs, now);
        if let Some(rs) = new_rs {
            let found = s.new_reason.or_else(|| {
                status::get(&st, "Progressing")
                    .is_none()
                    .then_some("FoundNewReplicaSet")
            });
            if let Some(reason) = found {
                status::new_set_condition(&mut st, reason, &name_of(rs), now);
            }
        }
        let requeue = status::progress(d, &mut st, new_rs, now);
        let revision = new_rs.map(|rs| plan::revision(rs).to_string());
        let current = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(plan::REVISION));
        let revision_differs = revision.is_some() && revision.as_ref() != current;
        if !status::differs(&d.status, &st) && !revision_differs {
            return Ok(requeue);
        }
        let mut patch = json!({"status": st});
        if let Some(r) = revision.filter(|_| revision_differs) {
            patch["metadata"] = json!({"annotations": {plan::REVISION: r}});
        }
        let name = name_of_d(d);
        match call(
            format!("updating the status of deployment {name}"),
            self.deploy_api(d)
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(_) => Ok(requeue),
            Err(e) if e.code() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Remembers the version of a set a write replaced (`before`, as the
    /// cache had it): until the cache moves past it, or STALE_MAX passes,
    /// the cache is stale for that set. A write that changed nothing
    /// (same resourceVersion) is not remembered: the cache would never
    /// move past it.
    fn wrote(&self, before: &ReplicaSet, after: &ReplicaSet) {
        let (Some(uid), Some(rv)) = (&before.metadata.uid, &before.metadata.resource_version)
        else {
            return;
        };
        if after.metadata.resource_version.as_ref() == Some(rv) {
            return;
        }
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        w.insert(uid.clone(), (rv.clone(), Instant::now()));
    }

    /// A set of `sets` is still at a version a write replaced (forgotten
    /// once the cache has moved on).
    fn stale(&self, sets: &[ReplicaSet]) -> bool {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let mut stale = false;
        for rs in sets {
            let Some(uid) = rs.metadata.uid.as_ref() else {
                continue;
            };
            match w.get(uid) {
                Some((rv, at))
                    if Some(rv) == rs.metadata.resource_version.as_ref()
                        && at.elapsed() < STALE_MAX =>
                {
                    stale = true
                }
                Some(_) => {
                    w.remove(uid);
                }
                None => {}
            }
        }
        stale
    }

    fn event(&self, d: &Deployment, type_: &str, reason: &str, message: String) {
        object_event(
            &self.events,
            "apps/v1",
            "Deployment",
            &d.metadata,
            type_,
            reason,
            message,
        );
    }

    fn rs_api(&self, d: &Deployment) -> Api<ReplicaSet> {
        Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    fn deploy_api(&self, d: &Deployment) -> Api<Deployment> {
        Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }
}

fn name_of(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

fn name_of_d(d: &Deployment) -> String {
    d.metadata.name.clone().unwrap_or_default()
}
