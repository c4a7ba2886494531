//! One view over the two kinds the controller runs: a ReplicaSet (apps/v1)
//! and a ReplicationController (v1), which kube treats as a ReplicaSet
//! whose selector is a plain label map. The controller reads a `Set` and
//! writes its status back in the kind's own shape.

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ReplicaSet,
    ReplicationController,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "apps/v1",
            Kind::ReplicationController => "v1",
        }
    }

    /// The queue key of the set `ns/name` of this kind.
    pub fn key(self, ns_name: &str) -> String {
        format!("{}/{ns_name}", self.name())
    }

    pub fn of_key(key: &str) -> Option<(Kind, &str, &str)> {
        let (kind, rest) = key.split_once('/')?;
        let (ns, name) = rest.split_once('/')?;
        let kind = match kind {
            "ReplicaSet" => Kind::ReplicaSet,
            "ReplicationController" => Kind::ReplicationController,
            _ => return None,
        };
        Some((kind, ns, name))
    }
}

/// What the controller needs of either kind.
#[derive(Debug, Clone)]
pub struct Set {
    pub kind: Kind,
    pub meta: ObjectMeta,
    pub replicas: i32,
    /// None selects nothing (an RC without selector and template labels).
    pub selector: Option<LabelSelector>,
    pub template: PodTemplateSpec,
    pub min_ready_seconds: i32,
    /// The status, as a ReplicaSet's (an RC's has the same fields but
    /// terminatingReplicas).
    pub status: ReplicaSetStatus,
}

impl Set {
    pub fn from_replica_set(rs: &ReplicaSet) -> Set {
        let spec = rs.spec.clone().unwrap_or_default();
        Set {
            kind: Kind::ReplicaSet,
            meta: rs.metadata.clone(),
            replicas: spec.replicas.unwrap_or(1),
            selector: Some(spec.selector),
            template: spec.template.unwrap_or_default(),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            status: rs.status.clone().unwrap_or_default(),
        }
    }

    pub fn from_controller(rc: &ReplicationController) -> Set {
        let spec = rc.spec.clone().unwrap_or_default();
        let template = spec.template.unwrap_or_default();
        // The apiserver defaults an empty selector to the template's labels.
        let labels = spec.selector.filter(|s| !s.is_empty()).or_else(|| {
            template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .filter(|l| !l.is_empty())
        });
        let status = rc
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        Set {
            kind: Kind::ReplicationController,
            meta: rc.metadata.clone(),
            replicas: spec.replicas.unwrap_or(1),
            selector: labels.map(|l| LabelSelector {
                match_labels: Some(l),
                match_expressions: None,
            }),
            template,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            status,
        }
    }

    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or("default")
    }

    pub fn key(&self) -> String {
        self.kind
            .key(&format!("{}/{}", self.namespace(), self.name()))
    }

    pub fn deleting(&self) -> bool {
        self.meta.deletion_timestamp.is_some()
    }
}

/// The status as the kind's status subresource takes it (a merge patch
/// body: every field given, absent ones as null, so that a stale one is
/// cleared).
pub fn status_patch(kind: Kind, status: &ReplicaSetStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        for field in [
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
            "conditions",
            "terminatingReplicas",
        ] {
            o.entry(field).or_insert(serde_json::Value::Null);
        }
        if kind == Kind::ReplicationController {
            o.remove("terminatingReplicas");
        }
    }
    serde_json::json!({ "status": v })
}
