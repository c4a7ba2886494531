//! Request bodies: JSON, YAML or Kubernetes protobuf in; checked against
//! the kind's typed schema, with unknown fields reported per the
//! fieldValidation mode.

use serde_json::{Value, json};

use crate::apiserver::context::Ctx;
use crate::apiserver::error::ApiError;
use crate::apiserver::resources::{self, Kind};

/// The body, an `api_version` `kind`, as a JSON object; Kubernetes
/// protobuf (what client-go sends by default) is transcoded.
pub fn decode_body(ctx: &Ctx, api_version: &str, kind: &str) -> Result<Value, ApiError> {
    let ct = ctx.content_type.split(';').next().unwrap_or("").trim();
    if ct == crate::apiserver::protobuf::MEDIA_TYPE {
        return crate::apiserver::protobuf::decode(&ctx.body, api_version, kind);
    }
    if ct == "application/yaml" {
        return crate::apiserver::patch::yaml_object(&ctx.body);
    }
    if !matches!(ct, "" | "application/json" | "*/*") {
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf".into(),
        ));
    }
    let v: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(v)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

pub fn field_validation(ctx: &Ctx) -> Result<FieldValidation, ApiError> {
    match ctx.param("fieldValidation") {
        None | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::BadRequest(format!(
            "fieldValidation parameter unsupported: {other}"
        ))),
    }
}

/// Check apiVersion/kind, decode through the typed schema (which rejects
/// wrong types and drops unknown fields), and report unknown fields per the
/// fieldValidation mode. Returns the normalized object and any warnings.
pub fn normalize(
    kind: &Kind,
    mode: FieldValidation,
    mut object: Value,
) -> Result<(Value, Vec<String>), ApiError> {
    let cannot = |msg: String| {
        ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: {msg}",
            kind.kind, kind.version, kind.kind
        ))
    };
    // A JSON patch can turn the whole document into a non-object.
    if !object.is_object() {
        return Err(cannot("the object must be a JSON object".into()));
    }
    let api_version = kind.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => object["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match object.get("kind").and_then(Value::as_str) {
        None | Some("") => object["kind"] = json!(kind.kind),
        Some(k) if k == kind.kind => {}
        Some(k) => {
            // kube's scheme: another kind cannot be converted into this one.
            let version = api_version.rsplit('/').next().unwrap_or(&api_version);
            let package = match kind.group {
                "" => "core",
                g => g.split('.').next().unwrap_or(g),
            };
            return Err(ApiError::BadRequest(format!(
                "{k} in version \"{version}\" cannot be handled as a {want}: converting ({version}.{k}) to ({package}.{want}): unknown conversion",
                want = kind.kind
            )));
        }
    }
    if !object.get("metadata").is_none_or(Value::is_object) {
        return Err(cannot("metadata must be an object".into()));
    }
    let mut typed = (kind.roundtrip)(object.clone()).map_err(cannot)?;
    crate::apiserver::kinds::workloads::keep_absent_selector(kind, &object, &mut typed);
    let unknown = resources::unknown_fields(&object, &typed);
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let list = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect::<Vec<_>>();
        match mode {
            FieldValidation::Strict => {
                return Err(cannot(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => warnings = list,
            FieldValidation::Ignore => {}
        }
    }
    Ok((typed, warnings))
}

/// A create/update body, decoded and normalized; warnings go to the reply.
pub fn decode_normalized(ctx: &mut Ctx, kind: &Kind) -> Result<Value, ApiError> {
    let body = decode_body(ctx, &kind.api_version(), kind.kind)?;
    let (object, warnings) = normalize(kind, field_validation(ctx)?, body)?;
    ctx.warnings.extend(warnings);
    Ok(object)
}
