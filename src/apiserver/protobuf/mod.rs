//! Kubernetes protobuf (`application/vnd.kubernetes.protobuf`) for every
//! kind served: request bodies, responses, Status errors and watch streams,
//! as kube-apiserver speaks it to client-go programs (kubelet, kube-proxy,
//! controllers), which send and ask for protobuf by default.
//!
//! A body is the magic `k8s\0` and a `runtime.Unknown` whose `typeMeta`
//! names the kind and whose `raw` is the object's message. A watch stream
//! is `WatchEvent` messages (no magic, no envelope), each after its length
//! as a 4-byte big-endian integer, with each event's object a full body.
//!
//! The messages are not hand-written: build.rs compiles the upstream
//! generated.proto files (proto/k8s.io) into a descriptor set, and
//! `transcode` walks it between protobuf and the JSON the store keeps.

mod go_fields;
pub mod transcode;

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value as PValue};
use serde_json::{Value, json};

use crate::apiserver::error::ApiError;

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The Content-Type of a protobuf watch stream.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

const MAGIC: &[u8] = b"k8s\0";
const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(include_bytes!(concat!(env!("OUT_DIR"), "/k8s.fds")).as_ref())
        .map_err(|e| format!("the built-in Kubernetes descriptors do not load: {e}"))
});

fn pool() -> Result<&'static DescriptorPool, ApiError> {
    POOL.as_ref().map_err(|e| ApiError::Internal(e.clone()))
}

/// Whether a Content-Type is Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == MEDIA_TYPE
}

/// The proto package of an API group version: `""/v1` is core,
/// `rbac.authorization.k8s.io/v1` is `k8s.io.api.rbac.v1`.
fn package(api_version: &str) -> String {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    match group {
        "" => format!("k8s.io.api.core.{version}"),
        "meta.k8s.io" => format!("k8s.io.apimachinery.pkg.apis.meta.{version}"),
        g => {
            let name = g.split('.').next().unwrap_or(g);
            format!("k8s.io.api.{name}.{version}")
        }
    }
}

/// The message of a kind: its group's, else meta/v1's (Status,
/// DeleteOptions, WatchEvent are in every group version).
fn message_for(api_version: &str, kind: &str) -> Result<MessageDescriptor, ApiError> {
    let pool = pool()?;
    pool.get_message_by_name(&format!("{}.{kind}", package(api_version)))
        .or_else(|| pool.get_message_by_name(&transcode::meta_message(kind)))
        .ok_or_else(|| {
            ApiError::NotAcceptable(format!(
                "{api_version} {kind} has no protobuf form; ask for application/json"
            ))
        })
}

fn bad(msg: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("invalid protobuf body: {msg}"))
}

/// The envelope's type and the raw object message.
fn open(body: &[u8]) -> Result<(String, String, Vec<u8>), ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s\\0 prefix"))?;
    let desc = pool()?
        .get_message_by_name(UNKNOWN)
        .ok_or_else(|| ApiError::Internal("no runtime.Unknown descriptor".into()))?;
    let unknown = DynamicMessage::decode(desc, rest).map_err(bad)?;
    let text = |v: Option<std::borrow::Cow<'_, PValue>>| {
        v.and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    };
    let (api_version, kind) = match unknown.get_field_by_number(1).as_deref() {
        Some(PValue::Message(tm)) => (
            text(tm.get_field_by_number(1)),
            text(tm.get_field_by_number(2)),
        ),
        _ => (String::new(), String::new()),
    };
    let encoding = text(unknown.get_field_by_number(3));
    if !encoding.is_empty() {
        return Err(bad(format!(
            "content encoding {encoding:?} is not supported"
        )));
    }
    let raw = unknown
        .get_field_by_number(2)
        .and_then(|v| v.as_bytes().map(|b| b.to_vec()))
        .unwrap_or_default();
    Ok((api_version, kind, raw))
}

fn to_object(desc: MessageDescriptor, raw: &[u8]) -> Result<Value, ApiError> {
    let msg = DynamicMessage::decode(desc, raw).map_err(bad)?;
    match transcode::to_json(&msg, "").map_err(bad)? {
        Some(v @ Value::Object(_)) => Ok(v),
        _ => Err(bad("the body is not an object")),
    }
}

/// Decode a request body that must be an `api_version` `kind` (the
/// envelope may leave its type empty, as kube allows).
pub fn decode(body: &[u8], api_version: &str, kind: &str) -> Result<Value, ApiError> {
    let (v, k, raw) = open(body)?;
    if (!k.is_empty() && k != kind) || (!v.is_empty() && v != api_version) {
        return Err(ApiError::BadRequest(format!(
            "the body is a {v} {k}, expected a {api_version} {kind}"
        )));
    }
    let mut object = to_object(message_for(api_version, kind)?, &raw)?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

/// Decode DeleteOptions, which clients send in their own group's version
/// (`v1`, `coordination.k8s.io/v1`) or meta.k8s.io's.
pub fn decode_delete_options(body: &[u8]) -> Result<Value, ApiError> {
    let (_, k, raw) = open(body)?;
    if !k.is_empty() && k != "DeleteOptions" {
        return Err(ApiError::BadRequest(format!(
            "the body is a {k}, expected DeleteOptions"
        )));
    }
    let desc = pool()?
        .get_message_by_name(&transcode::meta_message("DeleteOptions"))
        .ok_or_else(|| ApiError::Internal("no DeleteOptions descriptor".into()))?;
    to_object(desc, &raw)
}

/// Encode an object (its `apiVersion` and `kind` pick the message) as a
/// protobuf body.
pub fn encode(object: &Value) -> Result<Vec<u8>, ApiError> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    let desc = message_for(api_version, kind)?;
    let msg = transcode::from_json(&desc, object, "").map_err(|e| {
        ApiError::Internal(format!("encoding {api_version} {kind} as protobuf: {e}"))
    })?;
    let raw = msg.encode_to_vec();
    let mut tm = Vec::new();
    prost::encoding::string::encode(1, &api_version.to_string(), &mut tm);
    prost::encoding::string::encode(2, &kind.to_string(), &mut tm);
    let mut out = MAGIC.to_vec();
    prost::encoding::bytes::encode(1, &tm, &mut out);
    prost::encoding::bytes::encode(2, &raw, &mut out);
    // Go writes the empty contentEncoding and contentType too.
    prost::encoding::string::encode(3, &String::new(), &mut out);
    prost::encoding::string::encode(4, &String::new(), &mut out);
    Ok(out)
}

/// One frame of a protobuf watch stream: the length, then a WatchEvent
/// whose object is the object's full protobuf body.
pub fn watch_frame(event_type: &str, object: &Value) -> Result<Vec<u8>, ApiError> {
    let body = encode(object)?;
    let mut ext = Vec::new();
    prost::encoding::bytes::encode(1, &body, &mut ext);
    let mut event = Vec::new();
    prost::encoding::string::encode(1, &event_type.to_string(), &mut event);
    prost::encoding::bytes::encode(2, &ext, &mut event);
    let len = u32::try_from(event.len())
        .map_err(|_| ApiError::Internal("watch event too large".into()))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend(event);
    Ok(out)
}

/// Whether a client that sends this Accept gets protobuf: its first media
/// range that names a type is protobuf, without `as=` (Table and
/// PartialObjectMetadata are served as JSON).
pub fn wants_protobuf(accept: &str) -> bool {
    for range in accept.split(',') {
        let mut params = range.split(';').map(str::trim);
        let base = params.next().unwrap_or("");
        if base.is_empty() {
            continue;
        }
        return base == MEDIA_TYPE && !params.any(|p| p.starts_with("as="));
    }
    false
}

#[cfg(test)]
mod tests;
