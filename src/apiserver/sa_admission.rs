//! kube-apiserver's ServiceAccount admission for pods (plugin/pkg/admission/
//! serviceaccount): the pod's service account must exist; unless
//! automountServiceAccountToken (the pod's, else the account's) is false,
//! the pod gets the `kube-api-access-<random>` projected volume (a bound
//! token, the cluster CA from `kube-root-ca.crt`, the namespace) mounted
//! read-only at /var/run/secrets/kubernetes.io/serviceaccount in every
//! container that mounts nothing there; and a pod with no imagePullSecrets
//! gets the account's.

use serde_json::{Value, json};

use crate::apiserver::error::ApiError;
use crate::apiserver::meta::generate_name;
use crate::apiserver::store::{Txn, object_key};

pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME_PREFIX: &str = "kube-api-access-";
/// kube's: an hour and seven seconds (the seven tell kube-apiserver's token
/// extension a kubelet asks for the default).
const TOKEN_EXPIRATION: i64 = 3607;
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The projected volume kube adds, named `name`.
pub fn api_access_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]
        }
    })
}

/// Applies the admission to `pod` (defaulted, about to be created) with
/// its service account `sa`.
pub fn admit_with(pod: &mut Value, sa: &Value) {
    let automount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        add_api_access(pod);
    }
    let has_pull_secrets = pod["spec"]["imagePullSecrets"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    if !has_pull_secrets
        && let Some(refs) = sa["imagePullSecrets"].as_array().filter(|a| !a.is_empty())
    {
        pod["spec"]["imagePullSecrets"] = Value::Array(refs.clone());
    }
}

fn add_api_access(pod: &mut Value) {
    let spec = &mut pod["spec"];
    let existing = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|v| {
            let name = v["name"].as_str()?;
            name.starts_with(VOLUME_PREFIX).then(|| name.to_string())
        });
    let name = existing
        .clone()
        .unwrap_or_else(|| generate_name(VOLUME_PREFIX));
    let mut used = false;
    for list in ["initContainers", "containers"] {
        // get_mut: indexing would insert a null for a missing list.
        let containers = spec.get_mut(list).and_then(Value::as_array_mut);
        for c in containers.into_iter().flatten() {
            let mounts = c["volumeMounts"].as_array();
            if mounts
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"].as_str() == Some(TOKEN_MOUNT_PATH))
            {
                continue;
            }
            if !c["volumeMounts"].is_array() {
                c["volumeMounts"] = json!([]);
            }
            if let Some(m) = c["volumeMounts"].as_array_mut() {
                m.push(json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
                used = true;
            }
        }
    }
    if used && existing.is_none() {
        if !spec["volumes"].is_array() {
            spec["volumes"] = json!([]);
        }
        if let Some(v) = spec["volumes"].as_array_mut() {
            v.push(api_access_volume(&name));
        }
    }
}

/// The admission inside the create's transaction.
pub fn admit(txn: &Txn<'_>, namespace: &str, pod: &mut Value) -> Result<(), ApiError> {
    if pod["metadata"]["annotations"][MIRROR_ANNOTATION].is_string() {
        return Ok(());
    }
    let sa_name = pod["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    let Some(sa) = txn.get(&object_key("", "serviceaccounts", namespace, &sa_name))? else {
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
        return Err(ApiError::Forbidden(format!(
            "pods \"{pod_name}\" is forbidden: error looking up service account {namespace}/{sa_name}: serviceaccount \"{sa_name}\" not found"
        )));
    };
    admit_with(pod, &sa);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    #[test]
    fn every_container_gets_the_api_access_volume() {
        let mut p = pod(json!({"containers": [{"name": "a"}, {"name": "b",
            "volumeMounts": [{"name": "x", "mountPath": "/x"}]}],
            "initContainers": [{"name": "i"}]}));
        admit_with(&mut p, &json!({}));
        let mut q = pod(json!({"containers": [{"name": "a"}]}));
        admit_with(&mut q, &json!({}));
        assert!(
            q["spec"].get("initContainers").is_none(),
            "no null list added"
        );
        let vols = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        let name = vols[0]["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == 21,
            "{name}"
        );
        assert_eq!(
            vols[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        for c in ["containers", "initContainers"] {
            for ctr in p["spec"][c].as_array().unwrap() {
                let m = ctr["volumeMounts"].as_array().unwrap().last().unwrap();
                assert_eq!(m["mountPath"], TOKEN_MOUNT_PATH);
                assert_eq!(m["name"], name);
                assert_eq!(m["readOnly"], true);
            }
        }
    }

    #[test]
    fn automount_false_on_the_pod_or_account_adds_nothing() {
        let mut p =
            pod(json!({"automountServiceAccountToken": false, "containers": [{"name": "a"}]}));
        admit_with(&mut p, &json!({"automountServiceAccountToken": true}));
        assert!(p["spec"]["volumes"].is_null());
        let mut p = pod(json!({"containers": [{"name": "a"}]}));
        admit_with(&mut p, &json!({"automountServiceAccountToken": false}));
        assert!(p["spec"]["volumes"].is_null());
        // The pod's true wins over the account's false.
        let mut p =
            pod(json!({"automountServiceAccountToken": true, "containers": [{"name": "a"}]}));
        admit_with(&mut p, &json!({"automountServiceAccountToken": false}));
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_container_mounting_the_path_itself_is_left_alone() {
        let mut p = pod(json!({"containers": [{"name": "a", "volumeMounts": [
            {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}]}));
        admit_with(&mut p, &json!({}));
        assert!(p["spec"]["volumes"].is_null());
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn pull_secrets_come_from_the_account_when_the_pod_has_none() {
        let sa = json!({"imagePullSecrets": [{"name": "reg"}]});
        let mut p = pod(json!({"containers": [{"name": "a"}]}));
        admit_with(&mut p, &sa);
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "reg"}]));
        let mut p =
            pod(json!({"imagePullSecrets": [{"name": "own"}], "containers": [{"name": "a"}]}));
        admit_with(&mut p, &sa);
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "own"}]));
    }
}
