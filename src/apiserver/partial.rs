//! What a client asked an object to be served as (`Accept: ...;as=Table`,
//! `as=PartialObjectMetadata`, `as=PartialObjectMetadataList` of
//! meta.k8s.io/v1), decided as kube-apiserver does: the first media range
//! the server can produce wins, and an object that cannot be served that
//! way (a list asked for as one object, or the reverse) is a 406.

use serde_json::{Value, json};

use crate::apiserver::error::ApiError;

/// The shape of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum As {
    /// The object itself, in JSON or protobuf.
    #[default]
    Object,
    Table,
    /// `PartialObjectMetadata` for one object (also for watch events).
    Meta,
    /// `PartialObjectMetadataList` for a list.
    MetaList,
}

/// The negotiated shape and whether it is encoded as protobuf, or `None`
/// when no range can be served (the caller answers 406).
pub fn negotiate(accept: &str) -> Option<(As, bool)> {
    if accept.trim().is_empty() {
        return Some((As::Object, false));
    }
    for range in accept.split(',') {
        let mut params = range.split(';').map(str::trim);
        let base = params.next().unwrap_or("");
        let protobuf = base == crate::apiserver::protobuf::MEDIA_TYPE;
        let json = matches!(
            base,
            "application/json" | "application/*" | "*/*" | "*" | "application/json-patch+json"
        );
        if !protobuf && !json {
            continue;
        }
        let params: Vec<&str> = params.collect();
        let shape = match params.iter().find_map(|p| p.strip_prefix("as=")) {
            None => As::Object,
            Some(name) => {
                let meta_v1 = params.contains(&"g=meta.k8s.io")
                    && params.iter().any(|p| matches!(*p, "v=v1" | "v=v1beta1"));
                match name {
                    _ if !meta_v1 => continue,
                    // Tables are served as JSON only.
                    "Table" if protobuf => continue,
                    "Table" => As::Table,
                    "PartialObjectMetadata" => As::Meta,
                    "PartialObjectMetadataList" => As::MetaList,
                    _ => continue,
                }
            }
        };
        return Some((shape, protobuf));
    }
    None
}

/// Go's name of an object's internal type, as kube's messages print it
/// (`*core.ConfigMap`, `*coordination.LeaseList`).
fn go_type(body: &Value) -> String {
    let api_version = body["apiVersion"].as_str().unwrap_or("v1");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let package = match group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    format!("*{package}.{}", body["kind"].as_str().unwrap_or(""))
}

fn is_list(body: &Value) -> bool {
    body["kind"].as_str().is_some_and(|k| k.ends_with("List")) && body.get("items").is_some()
}

fn meta_of(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// One object (or a watch event's object) as PartialObjectMetadata.
pub fn object_meta(object: &Value) -> Value {
    meta_of(object)
}

/// A reply body in the asked shape (Table is the callers' own). A
/// Status is passed through as it is.
pub fn shape(wanted: As, body: &Value) -> Result<Value, ApiError> {
    if body["kind"] == "Status" {
        return Ok(body.clone());
    }
    match wanted {
        As::Object | As::Table => Ok(body.clone()),
        As::Meta if is_list(body) => Err(ApiError::NotAcceptable(format!(
            "you requested PartialObjectMetadata, but the requested object is a list ({})",
            go_type(body)
        ))),
        As::Meta => Ok(meta_of(body)),
        As::MetaList if !is_list(body) => Err(ApiError::NotAcceptable(format!(
            "you requested PartialObjectMetadataList, but the requested object is not a list ({})",
            go_type(body)
        ))),
        As::MetaList => {
            let items: Vec<Value> = body["items"]
                .as_array()
                .map(|items| items.iter().map(meta_of).collect())
                .unwrap_or_default();
            Ok(json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": body.get("metadata").cloned().unwrap_or_else(|| json!({})),
                "items": items,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_servable_range_wins() {
        let pom = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(negotiate(pom), Some((As::Meta, false)));
        assert_eq!(
            negotiate(&format!("{pom},application/json")),
            Some((As::Meta, false))
        );
        assert_eq!(
            negotiate("application/json;as=Foo;g=meta.k8s.io;v=v1,application/json"),
            Some((As::Object, false))
        );
        assert_eq!(
            negotiate(
                "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            ),
            Some((As::MetaList, true))
        );
        assert_eq!(
            negotiate("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
            Some((As::Table, false))
        );
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf, */*"),
            Some((As::Object, true))
        );
        assert_eq!(negotiate("text/html"), None);
    }

    #[test]
    fn lists_and_objects_are_not_interchangeable() {
        let cm =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}});
        let list =
            json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": [cm]});
        assert_eq!(
            shape(As::Meta, &cm).unwrap()["kind"],
            "PartialObjectMetadata"
        );
        assert!(shape(As::Meta, &cm).unwrap().get("data").is_none());
        let err = shape(As::Meta, &list).unwrap_err();
        assert!(err.to_string().contains("(*core.ConfigMapList)"), "{err}");
        let l = shape(As::MetaList, &list).unwrap();
        assert_eq!(l["items"][0]["kind"], "PartialObjectMetadata");
        assert!(shape(As::MetaList, &cm).is_err());
    }
}
