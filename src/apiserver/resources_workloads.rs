//! The workload kinds' entries of the kinds table (apps/v1, batch/v1,
//! policy/v1 and core/v1 replicationcontrollers), and which of them have a
//! `scale` subresource. Their defaults and validation are in
//! `kinds::workloads`; their table columns in `table_workloads`.

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;

use super::{Kind, roundtrip, schema};

/// Kinds served with an autoscaling/v1 `scale` subresource.
pub fn has_scale(kind: &Kind) -> bool {
    matches!(
        (kind.group, kind.resource),
        ("", "replicationcontrollers") | ("apps", "deployments" | "replicasets" | "statefulsets")
    )
}

pub const REPLICATION_CONTROLLERS: Kind = Kind {
    group: "",
    version: "v1",
    resource: "replicationcontrollers",
    kind: "ReplicationController",
    singular: "replicationcontroller",
    namespaced: true,
    short_names: &["rc"],
    status: true,
    roundtrip: roundtrip::<core::ReplicationController>,
    schema: schema::<core::ReplicationController>,
    field_labels: &["status.replicas"],
};

pub const DEPLOYMENTS: Kind = Kind {
    group: "apps",
    version: "v1",
    resource: "deployments",
    kind: "Deployment",
    singular: "deployment",
    namespaced: true,
    short_names: &["deploy"],
    status: true,
    roundtrip: roundtrip::<apps::Deployment>,
    schema: schema::<apps::Deployment>,
    field_labels: &[],
};

pub const REPLICA_SETS: Kind = Kind {
    group: "apps",
    version: "v1",
    resource: "replicasets",
    kind: "ReplicaSet",
    singular: "replicaset",
    namespaced: true,
    short_names: &["rs"],
    status: true,
    roundtrip: roundtrip::<apps::ReplicaSet>,
    schema: schema::<apps::ReplicaSet>,
    field_labels: &["status.replicas"],
};

pub const DAEMON_SETS: Kind = Kind {
    group: "apps",
    version: "v1",
    resource: "daemonsets",
    kind: "DaemonSet",
    singular: "daemonset",
    namespaced: true,
    short_names: &["ds"],
    status: true,
    roundtrip: roundtrip::<apps::DaemonSet>,
    schema: schema::<apps::DaemonSet>,
    field_labels: &[],
};

pub const STATEFUL_SETS: Kind = Kind {
    group: "apps",
    version: "v1",
    resource: "statefulsets",
    kind: "StatefulSet",
    singular: "statefulset",
    namespaced: true,
    short_names: &["sts"],
    status: true,
    roundtrip: roundtrip::<apps::StatefulSet>,
    schema: schema::<apps::StatefulSet>,
    field_labels: &[],
};

pub const CONTROLLER_REVISIONS: Kind = Kind {
    group: "apps",
    version: "v1",
    resource: "controllerrevisions",
    kind: "ControllerRevision",
    singular: "controllerrevision",
    namespaced: true,
    short_names: &[],
    status: false,
    roundtrip: roundtrip::<apps::ControllerRevision>,
    schema: schema::<apps::ControllerRevision>,
    field_labels: &[],
};

pub const JOBS: Kind = Kind {
    group: "batch",
    version: "v1",
    resource: "jobs",
    kind: "Job",
    singular: "job",
    namespaced: true,
    short_names: &[],
    status: true,
    roundtrip: roundtrip::<batch::Job>,
    schema: schema::<batch::Job>,
    field_labels: &["status.successful"],
};

pub const CRON_JOBS: Kind = Kind {
    group: "batch",
    version: "v1",
    resource: "cronjobs",
    kind: "CronJob",
    singular: "cronjob",
    namespaced: true,
    short_names: &["cj"],
    status: true,
    roundtrip: roundtrip::<batch::CronJob>,
    schema: schema::<batch::CronJob>,
    field_labels: &[],
};

pub const POD_DISRUPTION_BUDGETS: Kind = Kind {
    group: "policy",
    version: "v1",
    resource: "poddisruptionbudgets",
    kind: "PodDisruptionBudget",
    singular: "poddisruptionbudget",
    namespaced: true,
    short_names: &["pdb"],
    status: true,
    roundtrip: roundtrip::<policy::PodDisruptionBudget>,
    schema: schema::<policy::PodDisruptionBudget>,
    field_labels: &[],
};
