//! Normalising what legitimately differs between two servers (identities,
//! versions, clocks, generated names, allocated addresses and ports) and
//! listing the JSON pointers where the rest differs.

use serde_json::{Value, json};

/// Fields whose value is the server's own (compared for presence only).
const OPAQUE: &[&str] = &[
    "uid",
    "resourceVersion",
    "continue",
    "selfLink",
    "clusterIP",
    "clusterIPs",
    "nodePort",
    "time",
    "ca.crt",
    "gitCommit",
    "gitTreeState",
    "buildDate",
    "goVersion",
    "compiler",
    "platform",
    "gitVersion",
    "emulationMajor",
    "emulationMinor",
    "minCompatibilityMajor",
    "minCompatibilityMinor",
];

fn opaque(key: &str) -> bool {
    OPAQUE.contains(&key) || key.ends_with("Timestamp") || key.ends_with("Time")
}

/// Replace server-specific values by a placeholder, in place.
pub fn normalise(v: &mut Value) {
    match v {
        Value::Object(map) => {
            // A generated name: keep the prefix only.
            if let (Some(Value::String(prefix)), Some(Value::String(name))) =
                (map.get("generateName").cloned(), map.get_mut("name"))
                && name.starts_with(prefix.as_str())
            {
                *name = format!("{prefix}<generated>");
            }
            for (k, child) in map.iter_mut() {
                if opaque(k) && !child.is_null() {
                    *child = json!("<server>");
                } else if let Value::String(s) = child {
                    *s = scrub_text(s);
                } else {
                    normalise(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        Value::String(s) => *s = scrub_text(s),
        _ => {}
    }
}

/// Text with the server-specific parts (ports, resource versions, uids)
/// taken out.
pub fn scrub_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut prev_colon = false;
    while let Some(c) = chars.next() {
        // 127.0.0.1:PORT
        if prev_colon && c.is_ascii_digit() && out.ends_with("127.0.0.1:") {
            while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                chars.next();
            }
            out.push_str("<port>");
            prev_colon = false;
            continue;
        }
        prev_colon = c == ':';
        out.push(c);
    }
    scrub_generated(&scrub_uids(&out), "kube-api-access-", 5)
}

/// A generated suffix after `prefix` (as the ServiceAccount admission's
/// volume name) becomes `<generated>`.
fn scrub_generated(s: &str, prefix: &str, len: usize) -> String {
    match s.find(prefix) {
        Some(i)
            if s.len() >= i + prefix.len() + len && s.is_char_boundary(i + prefix.len() + len) =>
        {
            let end = i + prefix.len() + len;
            format!("{}{prefix}<generated>{}", &s[..i], &s[end..])
        }
        _ => s.to_string(),
    }
}

/// 8-4-4-4-12 hex uids.
fn scrub_uids(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if i + 36 <= b.len() && is_uid(&b[i..i + 36]) {
            out.push_str("<uid>");
            i += 36;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    // Multi-byte text: fall back to the original when scrubbing broke it.
    if s.is_ascii() { out } else { s.to_string() }
}

fn is_uid(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
    })
}

fn short(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 1500 {
                let cut: String = s.chars().take(1500).collect();
                format!("{cut}…")
            } else {
                s
            }
        }
    }
}

/// Every pointer where `d` (deckhand) and `s` (stock) differ.
pub fn diff(d: &Value, s: &Value, at: String, out: &mut Vec<(String, String, String)>) {
    match (d, s) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(x, y, p, out),
                    (x, y) => out.push((p, short(x), short(y))),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let p = format!("{at}/{i}");
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => diff(x, y, p, out),
                    (x, y) => out.push((p, short(x), short(y))),
                }
            }
        }
        _ if d == s => {}
        _ => out.push((
            if at.is_empty() { "/".into() } else { at },
            short(Some(d)),
            short(Some(s)),
        )),
    }
}
