//! What the Job controller sends: the pods it creates (from the template,
//! with the tracking finalizer, the controller ownerReference and, for
//! Indexed jobs, the completion index annotation, label, hostname and
//! JOB_COMPLETION_INDEX variable), the finalizer removal, pod deletion, and
//! events on the job. Shared with the other workload controllers: the
//! ownerReference and the finalizer patch.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use super::pods::{INDEX_ANNOTATION, TRACKING_FINALIZER};
use super::workqueue::{CallError, call};
use crate::node::events::EventRecorder;
use crate::node::status::events::NewEvent;

/// The controller ownerReference to `meta` (of `api_version`/`kind`).
pub fn controller_ref(
    api_version: &str,
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod the job runs next (index given for Indexed jobs).
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    };
    let meta = &mut pod.metadata;
    meta.name = None;
    meta.namespace = job.metadata.namespace.clone();
    meta.generate_name = Some(match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    });
    meta.owner_references = Some(vec![controller_ref("batch/v1", "Job", &job.metadata)]);
    meta.finalizers = Some(vec![TRACKING_FINALIZER.into()]);
    if let Some(i) = index {
        meta.annotations
            .get_or_insert_default()
            .insert(INDEX_ANNOTATION.into(), i.to_string());
        meta.labels
            .get_or_insert_default()
            .insert(INDEX_ANNOTATION.into(), i.to_string());
        if let Some(spec) = pod.spec.as_mut() {
            if spec.hostname.as_deref().unwrap_or("").is_empty() {
                spec.hostname = Some(format!("{name}-{i}"));
            }
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{INDEX_ANNOTATION}']"),
                    }),
                    ..Default::default()
                }),
            };
            for c in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                let vars = c.env.get_or_insert_default();
                if !vars.iter().any(|v| v.name == env.name) {
                    vars.push(env.clone());
                }
            }
        }
    }
    pod
}

/// Removes `finalizer` from the pod (a JSON patch that tests it is still
/// at its place, so no other finalizer is lost); a pod gone already is fine.
pub async fn remove_finalizer(api: &Api<Pod>, pod: &Pod, finalizer: &str) -> Result<(), CallError> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let Some(i) = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .position(|f| f == finalizer)
    else {
        return Ok(());
    };
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": finalizer},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]))
    .unwrap_or_else(|_| json_patch::Patch(Vec::new()));
    let pp = PatchParams::default();
    match call(
        format!("removing the finalizer of pod {name}"),
        api.patch(name, &pp, &Patch::<()>::Json(patch)),
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(404) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the pod (this very one: its uid is the precondition).
pub async fn delete_pod(api: &Api<Pod>, pod: &Pod) -> Result<(), CallError> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match call(format!("deleting pod {name}"), api.delete(name, &dp)).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the pod; its name.
pub async fn create_pod(api: &Api<Pod>, pod: &Pod) -> Result<String, CallError> {
    let what = format!(
        "creating a pod {}",
        pod.metadata
            .generate_name
            .as_deref()
            .or(pod.metadata.name.as_deref())
            .unwrap_or("")
    );
    let created = call(what, api.create(&PostParams::default(), pod)).await?;
    Ok(created.metadata.name.unwrap_or_default())
}

/// An event on a workload object (`api_version`/`kind`).
pub fn object_event(
    events: &EventRecorder,
    api_version: &str,
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    type_: &str,
    reason: &str,
    message: String,
) {
    events.record(NewEvent {
        involved_object: ObjectReference {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            field_path: None,
        },
        type_: type_.into(),
        reason: reason.into(),
        message,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    #[test]
    fn indexed_pods_carry_their_index() {
        let mut job = Job::default();
        job.metadata.name = Some("pi".into());
        job.metadata.uid = Some("u1".into());
        job.spec = Some(JobSpec {
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        });
        let pod = new_pod(&job, Some(2));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(pod.metadata.annotations.unwrap()[INDEX_ANNOTATION], "2");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        assert_eq!(
            spec.containers[0].env.as_ref().unwrap()[0].name,
            "JOB_COMPLETION_INDEX"
        );
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
        assert_eq!(pod.metadata.finalizers.unwrap(), vec![TRACKING_FINALIZER]);
        let plain = new_pod(&job, None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(plain.spec.unwrap().hostname.is_none());
    }
}
