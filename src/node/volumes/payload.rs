//! What a configMap, secret, downwardAPI or projected volume holds: the
//! kubelet's MakePayload for each (pkg/volume/{configmap,secret,
//! downwardapi,projected}), from the objects as the API has them now.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, Secret,
};

use super::VolumeError;
use super::atomic_writer::{FileProjection, Payload};
use crate::node::podspec::{
    NodeContext, ObjectLookup, format_map, resource_field_value, split_subscript,
};

/// kube's default file mode for every one of these volume types (0644).
pub const DEFAULT_MODE: i32 = 0o644;

/// Gets a bound service-account token for the pod (the TokenRequest API).
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<String, String>;
}

fn mode_of(mode: Option<i32>, default: i32) -> u32 {
    (mode.unwrap_or(default) & 0o777) as u32
}

/// Keys (or items) to files; `found` is the object's data as bytes.
fn key_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    kind: &str,
) -> Result<Payload, VolumeError> {
    let mut out = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode_of(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(VolumeError::MissingKey {
                        kind: kind.to_string(),
                        key: item.key.clone(),
                    });
                };
                out.insert(
                    item.path.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode_of(item.mode, default_mode),
                    },
                );
            }
        }
    }
    Ok(out)
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    data
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    // stringData is write-only in the API; honoured if a fake hands it over.
    for (k, v) in s.string_data.iter().flatten() {
        data.entry(k.clone())
            .or_insert_with(|| v.clone().into_bytes());
    }
    data
}

pub async fn config_map(
    lookup: &dyn ObjectLookup,
    namespace: &str,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    match lookup
        .config_map(namespace, name)
        .await
        .map_err(VolumeError::Lookup)?
    {
        Some(cm) => key_payload(
            &config_map_data(&cm),
            items,
            default_mode,
            optional,
            "configmap references non-existent config key",
        ),
        None if optional => Ok(Payload::new()),
        None => Err(VolumeError::NotFound {
            kind: "configmap",
            name: name.to_string(),
        }),
    }
}

pub async fn secret(
    lookup: &dyn ObjectLookup,
    namespace: &str,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    match lookup
        .secret(namespace, name)
        .await
        .map_err(VolumeError::Lookup)?
    {
        Some(s) => key_payload(
            &secret_data(&s),
            items,
            default_mode,
            optional,
            "references non-existent secret key",
        ),
        None if optional => Ok(Payload::new()),
        None => Err(VolumeError::NotFound {
            kind: "secret",
            name: name.to_string(),
        }),
    }
}

/// A downward API volume file's value: the metadata fields kube allows in
/// volumes, or a container's resource.
fn downward_value(
    item: &DownwardAPIVolumeFile,
    pod: &Pod,
    node: &NodeContext,
) -> Result<Vec<u8>, VolumeError> {
    let bad = |m: String| VolumeError::DownwardApi(m);
    if let Some(fs) = &item.field_ref {
        let meta = &pod.metadata;
        let path = fs.field_path.as_str();
        if let Some((head, key)) = split_subscript(path) {
            let map = match head {
                "metadata.labels" => meta.labels.as_ref(),
                "metadata.annotations" => meta.annotations.as_ref(),
                _ => {
                    return Err(bad(format!(
                        "field label does not support subscript: {path}"
                    )));
                }
            };
            return Ok(map
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default()
                .into_bytes());
        }
        let v = match path {
            "metadata.name" => meta.name.clone().unwrap_or_default(),
            "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            "metadata.labels" => format_map(meta.labels.as_ref()),
            "metadata.annotations" => format_map(meta.annotations.as_ref()),
            _ => return Err(bad(format!("unsupported fieldPath in a volume: {path}"))),
        };
        return Ok(v.into_bytes());
    }
    if let Some(rf) = &item.resource_field_ref {
        let name = rf.container_name.as_deref().unwrap_or("");
        let container = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| bad(format!("container {name:?} not found for resourceFieldRef")))?;
        return resource_field_value(rf, pod, container, node)
            .map(String::into_bytes)
            .map_err(|e| bad(e.message));
    }
    Err(bad(format!(
        "item {:?} has neither fieldRef nor resourceFieldRef",
        item.path
    )))
}

pub fn downward_api(
    pod: &Pod,
    node: &NodeContext,
    items: Option<&Vec<DownwardAPIVolumeFile>>,
    default_mode: i32,
) -> Result<Payload, VolumeError> {
    let mut out = Payload::new();
    for item in items.into_iter().flatten() {
        out.insert(
            item.path.clone(),
            FileProjection {
                data: downward_value(item, pod, node)?,
                mode: mode_of(item.mode, default_mode),
            },
        );
    }
    Ok(out)
}

/// Every source of a projected volume into one payload.
pub async fn projected(
    pod: &Pod,
    node: &NodeContext,
    source: &ProjectedVolumeSource,
    lookup: &dyn ObjectLookup,
    tokens: &dyn TokenSource,
) -> Result<Payload, VolumeError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    for s in source.sources.iter().flatten() {
        if let Some(cm) = &s.config_map {
            let optional = cm.optional.unwrap_or(false);
            out.extend(
                config_map(
                    lookup,
                    namespace,
                    &cm.name,
                    cm.items.as_ref(),
                    mode,
                    optional,
                )
                .await?,
            );
        }
        if let Some(sec) = &s.secret {
            let optional = sec.optional.unwrap_or(false);
            out.extend(
                secret(
                    lookup,
                    namespace,
                    &sec.name,
                    sec.items.as_ref(),
                    mode,
                    optional,
                )
                .await?,
            );
        }
        if let Some(d) = &s.downward_api {
            out.extend(downward_api(pod, node, d.items.as_ref(), mode)?);
        }
        if let Some(t) = &s.service_account_token {
            let expiration = t.expiration_seconds.unwrap_or(3600);
            let token = tokens
                .token(pod, t.audience.as_deref(), expiration)
                .await
                .map_err(VolumeError::Token)?;
            out.insert(
                t.path.clone(),
                FileProjection {
                    data: token.into_bytes(),
                    mode: mode_of(None, mode),
                },
            );
        }
        if s.cluster_trust_bundle.is_some() {
            return Err(VolumeError::Unsupported(
                "clusterTrustBundle projections are not supported by deckhand".into(),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
