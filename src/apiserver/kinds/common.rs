//! Helpers every kind's defaults and validation share, and the checks that
//! apply to objects of several kinds (labels, data size).

use serde_json::{Map, Value, json};

use crate::apiserver::error::Cause;
use crate::apiserver::resources::Kind;

pub fn obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let m = v.as_object_mut()?;
    if !m.get(key).is_some_and(Value::is_object) {
        m.insert(key.into(), json!({}));
    }
    m.get_mut(key).and_then(Value::as_object_mut)
}

pub fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

pub fn cause(reason: &'static str, field: &str, message: impl Into<String>) -> Cause {
    Cause {
        reason: match reason {
            "required" => "FieldValueRequired",
            "duplicate" => "FieldValueDuplicate",
            "toolong" => "FieldValueTooLong",
            _ => "FieldValueInvalid",
        },
        field: field.into(),
        message: message.into(),
    }
}

/// kube's limit on a ConfigMap's or Secret's data (corev1.MaxSecretSize):
/// keys and values of `data` and `binaryData` count (for a Secret, `data`
/// as decoded bytes, `stringData` having been folded in already).
const MAX_DATA_SIZE: usize = 1024 * 1024;

pub fn validate_data_size(kind: &Kind, object: &Value, causes: &mut Vec<Cause>) {
    let size = |field: &str, base64_values: bool| -> usize {
        object[field].as_object().map_or(0, |m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v.as_str().unwrap_or("");
                    // Saturating: a short value ending in '=' ("a=") underflowed.
                    let decoded = (v.len() / 4 * 3)
                        .saturating_sub(v.bytes().rev().take_while(|&b| b == b'=').count());
                    k.len() + if base64_values { decoded } else { v.len() }
                })
                .sum()
        })
    };
    let (total, field) = if kind.resource == "secrets" {
        (size("data", true), "data")
    } else {
        // kube's field path for the whole object prints as "[]".
        (size("data", false) + size("binaryData", true), "[]")
    };
    if total > MAX_DATA_SIZE {
        causes.push(cause(
            "toolong",
            field,
            format!("Too long: may not be more than {MAX_DATA_SIZE} bytes"),
        ));
    }
}

pub fn validate_labels(object: &Value, causes: &mut Vec<Cause>) {
    if let Some(labels) = object["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            let value = v.as_str().unwrap_or("");
            let name_part = k.rsplit('/').next().unwrap_or(k);
            if name_part.len() > 63 {
                causes.push(cause(
                    "invalid",
                    "metadata.labels",
                    format!("Invalid value: \"{k}\": name part must be no more than 63 bytes"),
                ));
            } else if !crate::apiserver::selectors::valid_label_key(k) {
                causes.push(cause(
                    "invalid",
                    "metadata.labels",
                    format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
                ));
            }
            if !crate::apiserver::selectors::valid_label_value(value) {
                causes.push(cause(
                    "invalid",
                    "metadata.labels",
                    format!("Invalid value: \"{value}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                ));
            }
        }
    }
}
