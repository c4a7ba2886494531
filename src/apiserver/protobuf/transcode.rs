//! Kubernetes protobuf messages <-> the JSON the store keeps, generically,
//! by walking the descriptors of the upstream generated.proto files.
//!
//! The JSON is Kubernetes' own (what its Go types marshal to), not proto3's
//! JSON mapping: field names are the Go JSON names, int64 are numbers, and
//! apimachinery's custom types have their custom forms: Time and MicroTime
//! are RFC 3339 strings, Duration a Go duration string, Quantity a string,
//! IntOrString a number or a string, RawExtension and FieldsV1 embedded
//! JSON, Verbs and ExtraValue bare arrays. Embedded Go structs are inlined
//! and zero values of non-pointer `omitempty` fields dropped, per
//! `go_fields`.

use base64::Engine;
use k8s_openapi::jiff::Timestamp;
use prost_reflect::{
    DynamicMessage, Kind, MapKey, MessageDescriptor, ReflectMessage, Value as PValue,
};
use serde_json::{Map, Number, Value};

use crate::apiserver::protobuf::go_fields;

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";

/// Where a value did not fit its field, for the error message.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TranscodeError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> TranscodeError {
    TranscodeError {
        path: if path.is_empty() {
            ".".into()
        } else {
            path.into()
        },
        message: message.into(),
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

// ---------------------------------------------------------------- to JSON

/// A decoded message as Kubernetes JSON. None for a zero Time (Go's JSON
/// writes null, which the store keeps as absent).
pub fn to_json(msg: &DynamicMessage, path: &str) -> Result<Option<Value>, TranscodeError> {
    let desc = msg.descriptor();
    let name = desc.full_name();
    let field = |n: u32| msg.get_field_by_number(n);
    match name {
        TIME | MICRO_TIME => {
            // Go writes a zero time as an empty message.
            if msg.fields().next().is_none() {
                return Ok(None);
            }
            let secs = field(1).and_then(|v| v.as_i64()).unwrap_or(0);
            let nanos = field(2).and_then(|v| v.as_i32()).unwrap_or(0);
            let micro = name == MICRO_TIME;
            // Time carries seconds only (Go drops the nanos it reads).
            let ts = Timestamp::new(secs, if micro { nanos } else { 0 })
                .map_err(|e| err(path, e.to_string()))?;
            let fmt = if micro {
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            } else {
                "%Y-%m-%dT%H:%M:%SZ"
            };
            let s = k8s_openapi::jiff::fmt::strtime::format(fmt, ts)
                .map_err(|e| err(path, e.to_string()))?;
            return Ok(Some(Value::String(s)));
        }
        DURATION => {
            let nanos = field(1).and_then(|v| v.as_i64()).unwrap_or(0);
            return Ok(Some(Value::String(go_duration(nanos))));
        }
        QUANTITY => {
            let s = field(1).and_then(|v| v.as_str().map(String::from));
            return Ok(Some(Value::String(s.unwrap_or_default())));
        }
        INT_OR_STRING => {
            let ty = field(1).and_then(|v| v.as_i64()).unwrap_or(0);
            return Ok(Some(if ty == 1 {
                Value::String(
                    field(3)
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                )
            } else {
                Value::from(field(2).and_then(|v| v.as_i32()).unwrap_or(0))
            }));
        }
        RAW_EXTENSION | FIELDS_V1 => {
            let raw = field(1)
                .and_then(|v| v.as_bytes().cloned())
                .unwrap_or_default();
            if raw.is_empty() {
                return Ok(None);
            }
            let v: Value = serde_json::from_slice(&raw)
                .map_err(|e| err(path, format!("embedded object is not JSON: {e}")))?;
            return Ok(Some(v));
        }
        _ => {}
    }
    if go_fields::is_list(name) {
        let items = match field(1).as_deref() {
            Some(PValue::List(items)) => items
                .iter()
                .map(|v| value_to_json(v, path))
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        return Ok(Some(Value::Array(items.into_iter().flatten().collect())));
    }
    let mut out = Map::new();
    for (fd, value) in msg.fields() {
        let go = go_fields::field(fd.full_name());
        let name = go.json.as_deref().unwrap_or(fd.name());
        let Some(v) = value_to_json(value, &child(path, name))? else {
            continue;
        };
        if go.inline {
            if let Value::Object(inner) = v {
                out.extend(inner);
            }
            continue;
        }
        if go.omit_zero && is_zero_scalar(&v) {
            continue;
        }
        out.insert(name.to_string(), v);
    }
    Ok(Some(Value::Object(out)))
}

fn is_zero_scalar(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn value_to_json(v: &PValue, path: &str) -> Result<Option<Value>, TranscodeError> {
    Ok(Some(match v {
        PValue::Bool(b) => Value::Bool(*b),
        PValue::I32(n) => Value::from(*n),
        PValue::I64(n) => Value::from(*n),
        PValue::U32(n) => Value::from(*n),
        PValue::U64(n) => Value::from(*n),
        PValue::F32(n) => Number::from_f64(f64::from(*n)).map_or(Value::Null, Value::Number),
        PValue::F64(n) => Number::from_f64(*n).map_or(Value::Null, Value::Number),
        PValue::String(s) => Value::String(s.clone()),
        PValue::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        PValue::EnumNumber(n) => Value::from(*n),
        PValue::Message(m) => return to_json(m, path),
        PValue::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                // A zero Time in a list stays a null, keeping positions.
                out.push(value_to_json(item, &format!("{path}[{i}]"))?.unwrap_or(Value::Null));
            }
            Value::Array(out)
        }
        PValue::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                let v = value_to_json(v, &child(path, &key))?.unwrap_or(Value::Null);
                out.insert(key, v);
            }
            Value::Object(out)
        }
    }))
}

/// Go's time.Duration.String(): "1h2m3.5s", "150ms", "0s".
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let n = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    let frac = |value: u64, unit: u64| -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let s = format!("{whole}.{rest:0digits$}");
        s.trim_end_matches('0').to_string()
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 1_000_000));
    }
    let secs = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let s = frac(s * 1_000_000_000 + sub, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// Parse a Go duration string ("1h30m", "2.5s", "-150ms").
fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * scale;
    }
    let n = total.round() as i64;
    Some(if neg { -n } else { n })
}

// -------------------------------------------------------------- from JSON

/// Build the message `desc` from Kubernetes JSON. Fields the message does
/// not have are ignored (as Go's decoder does with unknown JSON fields).
pub fn from_json(
    desc: &MessageDescriptor,
    v: &Value,
    path: &str,
) -> Result<DynamicMessage, TranscodeError> {
    let mut msg = DynamicMessage::new(desc.clone());
    let name = desc.full_name();
    let set = |msg: &mut DynamicMessage, n: u32, value: PValue| {
        msg.set_field_by_number(n, value);
    };
    match name {
        TIME | MICRO_TIME => {
            let s = v
                .as_str()
                .ok_or_else(|| err(path, "expected a time string"))?;
            let ts: Timestamp = s
                .parse()
                .map_err(|e| err(path, format!("invalid time {s:?}: {e}")))?;
            set(&mut msg, 1, PValue::I64(ts.as_second()));
            if name == MICRO_TIME {
                set(&mut msg, 2, PValue::I32(ts.subsec_nanosecond()));
            }
            return Ok(msg);
        }
        DURATION => {
            let s = v
                .as_str()
                .ok_or_else(|| err(path, "expected a duration string"))?;
            let n =
                parse_go_duration(s).ok_or_else(|| err(path, format!("invalid duration {s:?}")))?;
            set(&mut msg, 1, PValue::I64(n));
            return Ok(msg);
        }
        QUANTITY => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(err(path, "expected a quantity")),
            };
            set(&mut msg, 1, PValue::String(s));
            return Ok(msg);
        }
        INT_OR_STRING => {
            match v {
                Value::String(s) => {
                    set(&mut msg, 1, PValue::I64(1));
                    set(&mut msg, 3, PValue::String(s.clone()));
                }
                Value::Number(n) => {
                    let n = n
                        .as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(|| err(path, "int or string out of range"))?;
                    set(&mut msg, 1, PValue::I64(0));
                    set(&mut msg, 2, PValue::I32(n));
                }
                _ => return Err(err(path, "expected an int or a string")),
            }
            return Ok(msg);
        }
        RAW_EXTENSION | FIELDS_V1 => {
            let raw = serde_json::to_vec(v).map_err(|e| err(path, e.to_string()))?;
            set(&mut msg, 1, PValue::Bytes(raw.into()));
            return Ok(msg);
        }
        _ => {}
    }
    if go_fields::is_list(name) {
        let fd = desc
            .get_field(1)
            .ok_or_else(|| err(path, "list message without items"))?;
        let items = v.as_array().ok_or_else(|| err(path, "expected an array"))?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(single(&fd.kind(), item, &format!("{path}[{i}]"))?);
        }
        msg.set_field(&fd, PValue::List(out));
        return Ok(msg);
    }
    let obj = v
        .as_object()
        .ok_or_else(|| err(path, format!("expected an object for {}", short(name))))?;
    for fd in desc.fields() {
        let go = go_fields::field(fd.full_name());
        if go.inline {
            let Kind::Message(inner) = fd.kind() else {
                continue;
            };
            let sub = from_json(&inner, v, path)?;
            msg.set_field(&fd, PValue::Message(sub));
            continue;
        }
        let json_name = go.json.as_deref().unwrap_or(fd.name());
        let Some(fv) = obj.get(json_name).filter(|v| !v.is_null()) else {
            continue;
        };
        let p = child(path, json_name);
        let value = if fd.is_map() {
            let Kind::Message(entry) = fd.kind() else {
                return Err(err(&p, "map without entry type"));
            };
            let key_kind = entry.map_entry_key_field().kind();
            let value_kind = entry.map_entry_value_field().kind();
            let m = fv
                .as_object()
                .ok_or_else(|| err(&p, "expected an object"))?;
            let mut out = std::collections::HashMap::with_capacity(m.len());
            for (k, item) in m {
                if item.is_null() {
                    continue;
                }
                let key =
                    map_key(&key_kind, k).ok_or_else(|| err(&p, format!("bad map key {k:?}")))?;
                out.insert(key, single(&value_kind, item, &child(&p, k))?);
            }
            PValue::Map(out)
        } else if fd.is_list() {
            let items = fv.as_array().ok_or_else(|| err(&p, "expected an array"))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(single(&fd.kind(), item, &format!("{p}[{i}]"))?);
            }
            PValue::List(out)
        } else {
            single(&fd.kind(), fv, &p)?
        };
        msg.set_field(&fd, value);
    }
    Ok(msg)
}

fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn map_key(kind: &Kind, k: &str) -> Option<MapKey> {
    Some(match kind {
        Kind::String => MapKey::String(k.to_string()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(k.parse().ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(k.parse().ok()?),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(k.parse().ok()?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(k.parse().ok()?),
        Kind::Bool => MapKey::Bool(k.parse().ok()?),
        _ => return None,
    })
}

/// One value (not a list or a map) of a field of `kind`.
fn single(kind: &Kind, v: &Value, path: &str) -> Result<PValue, TranscodeError> {
    let int = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| err(path, "expected an integer"))
    };
    Ok(match kind {
        Kind::Bool => PValue::Bool(v.as_bool().ok_or_else(|| err(path, "expected a boolean"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            PValue::I32(i32::try_from(int(v)?).map_err(|_| err(path, "integer out of range"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => PValue::I64(int(v)?),
        Kind::Uint32 | Kind::Fixed32 => {
            PValue::U32(u32::try_from(int(v)?).map_err(|_| err(path, "integer out of range"))?)
        }
        Kind::Uint64 | Kind::Fixed64 => PValue::U64(
            v.as_u64()
                .ok_or_else(|| err(path, "expected an unsigned integer"))?,
        ),
        Kind::Float => {
            PValue::F32(v.as_f64().ok_or_else(|| err(path, "expected a number"))? as f32)
        }
        Kind::Double => PValue::F64(v.as_f64().ok_or_else(|| err(path, "expected a number"))?),
        Kind::String => PValue::String(
            v.as_str()
                .ok_or_else(|| err(path, "expected a string"))?
                .to_string(),
        ),
        Kind::Bytes => {
            let s = v
                .as_str()
                .ok_or_else(|| err(path, "expected base64 data"))?;
            let b = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| err(path, format!("invalid base64: {e}")))?;
            PValue::Bytes(b.into())
        }
        Kind::Enum(_) => {
            PValue::EnumNumber(i32::try_from(int(v)?).map_err(|_| err(path, "enum out of range"))?)
        }
        Kind::Message(desc) => PValue::Message(from_json(desc, v, path)?),
    })
}

/// The message for a meta.k8s.io kind (Status, DeleteOptions, WatchEvent).
pub fn meta_message(kind: &str) -> String {
    format!("{META}.{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (n, s) in [
            (0, "0s"),
            (1_500_000_000, "1.5s"),
            (3_600_000_000_000 + 120_000_000_000, "1h2m0s"),
            (150_000_000, "150ms"),
            (-2_000_000_000, "-2s"),
            (1_500, "1.5µs"),
        ] {
            assert_eq!(go_duration(n), s);
            assert_eq!(parse_go_duration(s), Some(n), "{s}");
        }
        assert_eq!(parse_go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("bogus"), None);
    }
}
