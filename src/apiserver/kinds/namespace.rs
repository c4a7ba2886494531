//! Everything about namespaces: defaults, what kube's controllers put in a
//! new one, refusing content in a terminating one, the protected ones, and
//! termination (the namespace controller's work, done in the delete).

use serde_json::{Value, json};

use crate::apiserver::context::Target;
use crate::apiserver::error::{ApiError, Cause, qualified};
use crate::apiserver::kinds::common::{default, obj};
use crate::apiserver::kinds::pod;
use crate::apiserver::meta::{mark_deleting, now_rfc3339};
use crate::apiserver::resources::{self, Kind};
use crate::apiserver::store::{Txn, collection_prefix, object_key};

pub fn namespace_key(ns: &str) -> String {
    object_key("", "namespaces", "", ns)
}

/// A namespace's defaults: its name label, the `kubernetes` finalizer,
/// phase Active.
pub fn apply_defaults(object: &mut Value) {
    let name = object["metadata"]["name"].clone();
    if let Some(labels) = obj(&mut object["metadata"], "labels") {
        labels.insert("kubernetes.io/metadata.name".into(), name);
    }
    if let Some(spec) = obj(object, "spec") {
        default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = obj(object, "status") {
        default(status, "phase", json!("Active"));
    }
}

/// Namespaces kube-apiserver refuses to delete.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Whether namespace `name` is one kube-apiserver refuses to delete.
pub fn is_protected(name: &str) -> bool {
    PROTECTED_NAMESPACES.contains(&name)
}

/// Content may go only into a namespace that exists and is not terminating.
pub fn ensure_usable(txn: &Txn<'_>, kind: &Kind, ns: &str, name: &str) -> Result<(), ApiError> {
    if !kind.namespaced {
        return Ok(());
    }
    match txn.get(&namespace_key(ns))? {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if n["metadata"]["deletionTimestamp"].is_string() => {
            Err(terminating(kind, ns, name))
        }
        Some(_) => Ok(()),
    }
}

/// kube's NamespaceLifecycle refusal, naming the object when it has a name.
fn terminating(kind: &Kind, ns: &str, name: &str) -> ApiError {
    let what = if name.is_empty() {
        qualified(kind.group, kind.resource)
    } else {
        format!("{} \"{name}\"", qualified(kind.group, kind.resource))
    };
    ApiError::ForbiddenOn(Box::new(crate::apiserver::error::ForbiddenOn {
        message: format!(
            "{what} is forbidden: unable to create new content in namespace {ns} because it is being terminated"
        ),
        group: kind.group.to_string(),
        resource: kind.resource.to_string(),
        name: name.to_string(),
        causes: vec![Cause {
            reason: "NamespaceTerminating",
            field: "metadata.namespace".into(),
            message: format!("namespace {ns} is being terminated"),
        }],
    }))
}

/// Whether anything is left in namespace `ns`.
pub fn is_empty(txn: &Txn<'_>, ns: &str) -> Result<bool, ApiError> {
    for k in resources::KINDS.iter().filter(|k| k.namespaced) {
        let mut prefix = collection_prefix(k.group, k.resource);
        prefix.push_str(ns);
        prefix.push('/');
        if !txn.list(&prefix)?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The namespace controller's last step: a terminating namespace goes once
/// its last object (say, a pod a kubelet just finished) is gone.
pub fn finish(txn: &mut Txn<'_>, ns: &str) -> Result<(), ApiError> {
    let key = namespace_key(ns);
    if let Some(n) = txn.get(&key)?
        && n["metadata"]["deletionTimestamp"].is_string()
        && is_empty(txn, ns)?
    {
        txn.delete(&key)?;
    }
    Ok(())
}

/// What kube's controllers put in every namespace: the `default`
/// ServiceAccount and the `kube-root-ca.crt` ConfigMap.
pub fn side_effects(txn: &mut Txn<'_>, ns: &str, ca_pem: &str) -> Result<(), ApiError> {
    let sa_key = object_key("", "serviceaccounts", ns, "default");
    if txn.get(&sa_key)?.is_none() {
        txn.put(
            &sa_key,
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                "name": "default", "namespace": ns,
                "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now_rfc3339()}}),
        )?;
    }
    let cm_key = object_key("", "configmaps", ns, "kube-root-ca.crt");
    if txn.get(&cm_key)?.is_none() {
        txn.put(
            &cm_key,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "kube-root-ca.crt", "namespace": ns,
                "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."},
                "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now_rfc3339()},
                "data": {"ca.crt": ca_pem}}),
        )?;
    }
    Ok(())
}

/// The namespace controller's job, done in the delete: the namespace turns
/// Terminating, its contents are deleted (pods bound to a node gracefully,
/// so their kubelet can stop them; objects with finalizers are marked
/// deleting and wait for them), and it goes when nothing is left. What
/// remains is told in kube's conditions.
pub fn terminate(txn: &mut Txn<'_>, t: &Target, mut ns: Value) -> Result<Value, ApiError> {
    if !ns["metadata"]["deletionTimestamp"].is_string() {
        ns["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        ns["status"]["phase"] = json!("Terminating");
        ns = txn.put(&namespace_key(&t.name), ns)?;
    }
    let mut left = Remaining::default();
    for k in resources::KINDS.iter().filter(|k| k.namespaced) {
        let mut prefix = collection_prefix(k.group, k.resource);
        prefix.push_str(&t.name);
        prefix.push('/');
        for (child, object) in txn.list(&prefix)? {
            let finalizers: Vec<String> = object["metadata"]["finalizers"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if !finalizers.is_empty() {
                mark_deleting(txn, &child, object, 0)?;
                left.add(k, &finalizers);
                continue;
            }
            if k.resource == "pods" {
                let grace = pod::grace(&object, None);
                if grace > 0 {
                    mark_deleting(txn, &child, object, grace)?;
                    left.add(k, &[]);
                    continue;
                }
            }
            txn.delete(&child)?;
        }
    }
    if is_empty(txn, &t.name)? {
        return txn
            .delete(&namespace_key(&t.name))?
            .ok_or_else(|| ApiError::not_found("", "namespaces", &t.name));
    }
    // The delete answers the namespace as it turned Terminating; the
    // conditions are the namespace controller's, written after.
    let mut held = ns.clone();
    held["status"]["conditions"] = left.conditions();
    txn.put(&namespace_key(&t.name), held)?;
    Ok(ns)
}

/// What a terminating namespace still holds: instances per resource and
/// per finalizer (kube's `resource.group` and counts).
#[derive(Default)]
struct Remaining {
    resources: std::collections::BTreeMap<String, usize>,
    finalizers: std::collections::BTreeMap<String, usize>,
}

impl Remaining {
    fn add(&mut self, k: &Kind, finalizers: &[String]) {
        *self
            .resources
            .entry(format!("{}.{}", k.resource, k.group))
            .or_default() += 1;
        for f in finalizers {
            *self.finalizers.entry(f.clone()).or_default() += 1;
        }
    }

    fn conditions(&self) -> Value {
        let now = now_rfc3339();
        let cond = |ty: &str, status: &str, reason: &str, message: String| {
            json!({"type": ty, "status": status, "lastTransitionTime": now,
                "reason": reason, "message": message})
        };
        let join = |m: &std::collections::BTreeMap<String, usize>, sep: &str| {
            m.iter()
                .map(|(k, n)| format!("{k}{sep}{n} resource instances"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = vec![
            cond(
                "NamespaceDeletionDiscoveryFailure",
                "False",
                "ResourcesDiscovered",
                "All resources successfully discovered".into(),
            ),
            cond(
                "NamespaceDeletionGroupVersionParsingFailure",
                "False",
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed".into(),
            ),
            cond(
                "NamespaceDeletionContentFailure",
                "False",
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            ),
        ];
        out.push(if self.resources.is_empty() {
            cond(
                "NamespaceContentRemaining",
                "False",
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            cond(
                "NamespaceContentRemaining",
                "True",
                "SomeResourcesRemain",
                format!(
                    "Some resources are remaining: {}",
                    join(&self.resources, " has ")
                ),
            )
        });
        out.push(if self.finalizers.is_empty() {
            cond(
                "NamespaceFinalizersRemaining",
                "False",
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            cond(
                "NamespaceFinalizersRemaining",
                "True",
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    join(&self.finalizers, " in ")
                ),
            )
        });
        Value::Array(out)
    }
}
