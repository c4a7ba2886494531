//! Decoding of Kubernetes protobuf request bodies into JSON.
//!
//! kubectl's typed clients (`kubectl create namespace|configmap|secret|
//! serviceaccount|service`) send `application/vnd.kubernetes.protobuf` and do
//! not fall back to JSON on 415, so those bodies must be understood. The
//! envelope is the magic `k8s\0` followed by a `runtime.Unknown` whose `raw`
//! holds the object. The object is decoded against a small field table per
//! message (tags from Kubernetes' generated.proto), for the kinds those
//! commands create; others stay 415.
//!
//! Go's encoder writes non-pointer fields even when empty, where its JSON
//! encoder would omit them (`omitempty`). To keep absent fields absent, empty
//! strings, zero integers, empty messages and zero timestamps are dropped.
//! Booleans are kept: the boolean fields here are pointers in Go, so they are
//! only on the wire when set.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::apiserver::error::ApiError;

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    Msg(&'static [Field]),
    MapStr,
    MapBytes,
    IntOrString,
    Time,
}

#[derive(Clone, Copy)]
struct Field {
    tag: u64,
    name: &'static str,
    ty: Ty,
    repeated: bool,
}

const fn f(tag: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        tag,
        name,
        ty,
        repeated: false,
    }
}

const fn r(tag: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        tag,
        name,
        ty,
        repeated: true,
    }
}

use Ty::*;

const OWNER_REFERENCE: &[Field] = &[
    f(1, "kind", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
    f(5, "apiVersion", Str),
    f(6, "controller", Bool),
    f(7, "blockOwnerDeletion", Bool),
];

const OBJECT_META: &[Field] = &[
    f(1, "name", Str),
    f(2, "generateName", Str),
    f(3, "namespace", Str),
    f(4, "selfLink", Str),
    f(5, "uid", Str),
    f(6, "resourceVersion", Str),
    f(7, "generation", Int),
    f(8, "creationTimestamp", Time),
    f(9, "deletionTimestamp", Time),
    f(10, "deletionGracePeriodSeconds", Int),
    f(11, "labels", MapStr),
    f(12, "annotations", MapStr),
    r(13, "ownerReferences", Msg(OWNER_REFERENCE)),
    r(14, "finalizers", Str),
];

const NAMESPACE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(&[r(1, "finalizers", Str)])),
    f(3, "status", Msg(&[f(1, "phase", Str)])),
];

const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "data", MapStr),
    f(3, "binaryData", MapBytes),
    f(4, "immutable", Bool),
];

const SECRET: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "data", MapBytes),
    f(3, "type", Str),
    f(4, "stringData", MapStr),
    f(5, "immutable", Bool),
];

const OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Str),
    f(2, "namespace", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
    f(5, "apiVersion", Str),
    f(6, "resourceVersion", Str),
    f(7, "fieldPath", Str),
];

const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "secrets", Msg(OBJECT_REFERENCE)),
    r(3, "imagePullSecrets", Msg(&[f(1, "name", Str)])),
    f(4, "automountServiceAccountToken", Bool),
];

const SERVICE_PORT: &[Field] = &[
    f(1, "name", Str),
    f(2, "protocol", Str),
    f(3, "port", Int),
    f(4, "targetPort", IntOrString),
    f(5, "nodePort", Int),
    f(6, "appProtocol", Str),
];

const SERVICE_SPEC: &[Field] = &[
    r(1, "ports", Msg(SERVICE_PORT)),
    f(2, "selector", MapStr),
    f(3, "clusterIP", Str),
    f(4, "type", Str),
    r(5, "externalIPs", Str),
    f(7, "sessionAffinity", Str),
    f(8, "loadBalancerIP", Str),
    r(9, "loadBalancerSourceRanges", Str),
    f(10, "externalName", Str),
    f(11, "externalTrafficPolicy", Str),
    f(12, "healthCheckNodePort", Int),
    f(13, "publishNotReadyAddresses", Bool),
    f(17, "ipFamilyPolicy", Str),
    r(18, "clusterIPs", Str),
    r(19, "ipFamilies", Str),
    f(20, "allocateLoadBalancerNodePorts", Bool),
    f(21, "loadBalancerClass", Str),
    f(22, "internalTrafficPolicy", Str),
    f(23, "trafficDistribution", Str),
];

const SERVICE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(SERVICE_SPEC)),
];

const RESOURCE_ATTRIBUTES: &[Field] = &[
    f(1, "namespace", Str),
    f(2, "verb", Str),
    f(3, "group", Str),
    f(4, "version", Str),
    f(5, "resource", Str),
    f(6, "subresource", Str),
    f(7, "name", Str),
];

const NON_RESOURCE_ATTRIBUTES: &[Field] = &[f(1, "path", Str), f(2, "verb", Str)];

const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            f(1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES)),
            f(2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES)),
        ]),
    ),
];

const SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            f(1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES)),
            f(2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES)),
            f(3, "user", Str),
            r(4, "groups", Str),
            f(6, "uid", Str),
        ]),
    ),
];

const SELF_SUBJECT_RULES_REVIEW: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(&[f(1, "namespace", Str)])),
];

const BOUND_OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Str),
    f(2, "apiVersion", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
];

const TOKEN_REQUEST: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            r(1, "audiences", Str),
            f(3, "boundObjectRef", Msg(BOUND_OBJECT_REFERENCE)),
            f(4, "expirationSeconds", Int),
        ]),
    ),
];

const POLICY_RULE: &[Field] = &[
    r(1, "verbs", Str),
    r(2, "apiGroups", Str),
    r(3, "resources", Str),
    r(4, "resourceNames", Str),
    r(5, "nonResourceURLs", Str),
];

const ROLE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "rules", Msg(POLICY_RULE)),
];

const ROLE_BINDING: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(
        2,
        "subjects",
        Msg(&[
            f(1, "kind", Str),
            f(2, "apiGroup", Str),
            f(3, "name", Str),
            f(4, "namespace", Str),
        ]),
    ),
    f(
        3,
        "roleRef",
        Msg(&[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)]),
    ),
];

const TOKEN_REVIEW: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[f(1, "token", Str), r(2, "audiences", Str)]),
    ),
];

const SELF_SUBJECT_REVIEW: &[Field] = &[f(1, "metadata", Msg(OBJECT_META))];

fn schema(resource: &str) -> Option<&'static [Field]> {
    Some(match resource {
        "selfsubjectaccessreviews" => SELF_SUBJECT_ACCESS_REVIEW,
        "selfsubjectreviews" => SELF_SUBJECT_REVIEW,
        "selfsubjectrulesreviews" => SELF_SUBJECT_RULES_REVIEW,
        "subjectaccessreviews" => SUBJECT_ACCESS_REVIEW,
        "tokenrequests" => TOKEN_REQUEST,
        "tokenreviews" => TOKEN_REVIEW,
        "roles" | "clusterroles" => ROLE,
        "rolebindings" | "clusterrolebindings" => ROLE_BINDING,
        "namespaces" => NAMESPACE,
        "configmaps" => CONFIG_MAP,
        "secrets" => SECRET,
        "serviceaccounts" => SERVICE_ACCOUNT,
        "services" => SERVICE,
        _ => return None,
    })
}

fn bad(msg: &str) -> ApiError {
    ApiError::BadRequest(format!("invalid protobuf body: {msg}"))
}

struct Reader<'a> {
    buf: &'a [u8],
}

enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Other,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| bad("truncated varint"))?;
            self.buf = rest;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(bad("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if n > self.buf.len() {
            return Err(bad("truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, ApiError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Other
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
                Wire::Len(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Other
            }
            _ => return Err(bad("unsupported wire type")),
        };
        Ok(Some((key >> 3, wire)))
    }
}

fn utf8(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8"))
}

/// A map entry message: key = 1, value = 2.
fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), ApiError> {
    let mut rd = Reader { buf: b };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while let Some((tag, wire)) = rd.next()? {
        match (tag, wire) {
            (1, Wire::Len(b)) => k = utf8(b)?,
            (2, Wire::Len(b)) if bytes_value => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (2, Wire::Len(b)) => v = json!(utf8(b)?),
            _ => {}
        }
    }
    Ok((k, v))
}

fn int_or_string(b: &[u8]) -> Result<Value, ApiError> {
    let mut rd = Reader { buf: b };
    let (mut ty, mut int, mut s) = (0, 0i64, String::new());
    while let Some((tag, wire)) = rd.next()? {
        match (tag, wire) {
            (1, Wire::Varint(v)) => ty = v,
            (2, Wire::Varint(v)) => int = v as i32 as i64,
            (3, Wire::Len(b)) => s = utf8(b)?,
            _ => {}
        }
    }
    Ok(if ty == 1 { json!(s) } else { json!(int) })
}

fn time(b: &[u8]) -> Result<Option<Value>, ApiError> {
    let mut rd = Reader { buf: b };
    let mut secs = 0i64;
    while let Some((tag, wire)) = rd.next()? {
        if let (1, Wire::Varint(v)) = (tag, wire) {
            secs = v as i64;
        }
    }
    if secs <= 0 {
        return Ok(None);
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    Ok(Some(json!(
        humantime::format_rfc3339_seconds(t).to_string()
    )))
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        Value::Bool(_) => false,
    }
}

fn message(b: &[u8], fields: &[Field], depth: usize) -> Result<Value, ApiError> {
    if depth > 16 {
        return Err(bad("nesting too deep"));
    }
    let mut out = Map::new();
    let mut rd = Reader { buf: b };
    while let Some((tag, wire)) = rd.next()? {
        let Some(field) = fields.iter().find(|f| f.tag == tag) else {
            continue;
        };
        let value = match (field.ty, wire) {
            (Str, Wire::Len(b)) => json!(utf8(b)?),
            (Int, Wire::Varint(v)) => json!(v as i64),
            (Bool, Wire::Varint(v)) => json!(v != 0),
            (Msg(inner), Wire::Len(b)) => message(b, inner, depth + 1)?,
            (IntOrString, Wire::Len(b)) => int_or_string(b)?,
            (Time, Wire::Len(b)) => match time(b)? {
                Some(t) => t,
                None => continue,
            },
            (MapStr | MapBytes, Wire::Len(b)) => {
                let (k, v) = map_entry(b, matches!(field.ty, MapBytes))?;
                let entry = out.entry(field.name).or_insert_with(|| json!({}));
                if let Some(m) = entry.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            _ => {
                return Err(bad(&format!(
                    "field {} has the wrong wire type",
                    field.name
                )));
            }
        };
        if field.repeated {
            let entry = out.entry(field.name).or_insert_with(|| json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(value);
            }
        } else if !is_empty(&value) {
            out.insert(field.name.into(), value);
        } else {
            out.remove(field.name);
        }
    }
    Ok(Value::Object(out))
}

/// Decode a protobuf request body for `resource` into its JSON form.
pub fn decode(
    resource: &str,
    api_version: &str,
    kind: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let fields = schema(resource).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "protobuf bodies are not supported for {resource}; send application/json"
        ))
    })?;
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| bad("missing k8s envelope"))?;
    let mut rd = Reader { buf: rest };
    let (mut raw, mut type_meta) = (None, None);
    while let Some((tag, wire)) = rd.next()? {
        match (tag, wire) {
            (1, Wire::Len(b)) => {
                type_meta = Some(message(
                    b,
                    &[f(1, "apiVersion", Str), f(2, "kind", Str)],
                    0,
                )?)
            }
            (2, Wire::Len(b)) => raw = Some(b),
            _ => {}
        }
    }
    let raw = raw.ok_or_else(|| bad("no object in envelope"))?;
    if let Some(tm) = &type_meta {
        let k = tm["kind"].as_str().unwrap_or(kind);
        let v = tm["apiVersion"].as_str().unwrap_or(api_version);
        if k != kind || v != api_version {
            return Err(ApiError::BadRequest(format!(
                "the body is a {v} {k}, expected a {api_version} {kind}"
            )));
        }
    }
    let mut object = message(raw, fields, 0)?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn len_field(tag: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(tag << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    #[test]
    fn decodes_configmap_like_go_encodes_it() {
        // ObjectMeta with name, an empty generateName (Go writes it) and an
        // empty creationTimestamp message.
        let mut meta = Vec::new();
        len_field(1, b"cm1", &mut meta);
        len_field(2, b"", &mut meta);
        len_field(8, b"", &mut meta);
        let mut entry = Vec::new();
        len_field(1, b"a", &mut entry);
        len_field(2, b"b", &mut entry);
        let mut cm = Vec::new();
        len_field(1, &meta, &mut cm);
        len_field(2, &entry, &mut cm);
        let mut tm = Vec::new();
        len_field(1, b"v1", &mut tm);
        len_field(2, b"ConfigMap", &mut tm);
        let mut unknown = Vec::new();
        len_field(1, &tm, &mut unknown);
        len_field(2, &cm, &mut unknown);
        let mut body = b"k8s\0".to_vec();
        body.extend(unknown);
        let v = decode("configmaps", "v1", "ConfigMap", &body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"a": "b"}})
        );
        assert!(decode("configmaps", "v1", "ConfigMap", &body[..body.len() - 3]).is_err());
        assert!(decode("configmaps", "v1", "ConfigMap", b"garbage").is_err());
        assert!(decode("secrets", "v1", "Secret", &body).is_err());
    }
}
