//! ControllerRevisions of a DaemonSet or StatefulSet: the pod template's
//! hash (the `controller-revision-hash` label of its pods), and the
//! revision object `<owner>-<hash>` holding the template as kube stores it
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`), numbered one past
//! the highest revision the owner has.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::json;

use crate::controllers::job::write::controller_ref;

pub const HASH_LABEL: &str = "controller-revision-hash";

/// kube's rand.SafeEncodeString alphabet (no vowels, no look-alikes).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The template's hash: FNV-32a of its JSON and the collision count (none
/// is 0, as kube counts it, so that writing status.collisionCount: 0 does
/// not change the hash), written as kube writes it (the decimal digits
/// through SafeEncodeString).
pub fn template_hash(template: &PodTemplateSpec, collisions: Option<i32>) -> String {
    let mut data = serde_json::to_vec(template).unwrap_or_default();
    data.extend_from_slice(collisions.unwrap_or(0).to_string().as_bytes());
    fnv32a(&data)
        .to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The revision object for `template` of the owner (`kind` of apps/v1).
pub fn revision(
    kind: &str,
    owner: &ObjectMeta,
    template: &PodTemplateSpec,
    hash: &str,
    number: i64,
) -> ControllerRevision {
    let mut tpl = serde_json::to_value(template).unwrap_or_default();
    if let Some(o) = tpl.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", owner.name.as_deref().unwrap_or(""))),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref("apps/v1", kind, owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(json!({"spec": {"template": tpl}}))),
        revision: number,
    }
}

/// The template a revision holds (to compare with the current one).
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut tpl = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(o) = tpl.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(tpl).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn hashes_follow_the_template() {
        let a = template_hash(&template("a"), None);
        assert_eq!(a, template_hash(&template("a"), None));
        assert_ne!(a, template_hash(&template("b"), None));
        assert_ne!(a, template_hash(&template("a"), Some(1)));
        assert_eq!(a, template_hash(&template("a"), Some(0)));
        assert!(a.bytes().all(|b| ALPHANUMS.contains(&b)));
        let owner = ObjectMeta {
            name: Some("ds".into()),
            ..Default::default()
        };
        let rev = revision("DaemonSet", &owner, &template("a"), &a, 3);
        assert_eq!(rev.metadata.name, Some(format!("ds-{a}")));
        assert_eq!(rev.revision, 3);
        assert_eq!(template_of(&rev), Some(template("a")));
    }
}
