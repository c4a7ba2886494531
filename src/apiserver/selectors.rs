//! Label and field selectors, parsed the way apimachinery parses them so the
//! same strings that work against kube-apiserver work here; a malformed
//! selector is a 400, never a panic.

use serde_json::Value;

use crate::apiserver::error::ApiError;
use crate::apiserver::resources::Kind;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced parenthesis".into());
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parenthesis".into());
    }
    out.push(&s[start..]);
    Ok(out)
}

fn set_values(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesized set of values, found '{rest}'"))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    for v in &values {
        if !valid_label_value(v) {
            return Err(format!("invalid label value: \"{v}\""));
        }
    }
    Ok(values)
}

/// A qualified name (`prefix/name`), as label keys must be.
pub fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !crate::apiserver::resources::is_dns_subdomain(p)
    {
        return false;
    }
    !name.is_empty() && name.len() <= 63 && valid_label_value(name)
}

pub fn valid_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let bytes = v.as_bytes();
    v.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        Self::parse_inner(s)
            .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))
    }

    fn parse_inner(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for term in split_top(s)? {
            let term = term.trim();
            if term.is_empty() {
                return Err("empty requirement".into());
            }
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement {
                    key: key.trim().into(),
                    op: Op::NotExists,
                }
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotEq(v.trim().into()),
                }
            } else if let Some((k, v)) = term.split_once("==") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, v)) = term.split_once('=') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, rest)) = split_word(term, "notin") {
                Requirement {
                    key: k.into(),
                    op: Op::NotIn(set_values(rest)?),
                }
            } else if let Some((k, rest)) = split_word(term, "in") {
                Requirement {
                    key: k.into(),
                    op: Op::In(set_values(rest)?),
                }
            } else {
                Requirement {
                    key: term.into(),
                    op: Op::Exists,
                }
            };
            if !valid_label_key(&req.key) {
                return Err(format!("invalid label key \"{}\"", req.key));
            }
            if let Op::Eq(v) | Op::NotEq(v) = &req.op
                && !valid_label_value(v)
            {
                // kube's lexer meets an operator where a value must be.
                if let Some(op) = ["==", "!=", "=", "!"].iter().find(|o| v.starts_with(**o)) {
                    return Err(format!("found '{op}', expected: identifier"));
                }
                return Err(format!("invalid label value: \"{v}\""));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.0.iter().all(|r| {
            let v = labels.get(&r.key).and_then(Value::as_str);
            match &r.op {
                Op::Eq(want) => v == Some(want.as_str()),
                Op::NotEq(want) => v != Some(want.as_str()),
                Op::In(set) => v.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::NotIn(set) => v.is_none_or(|v| !set.iter().any(|s| s == v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
            }
        })
    }
}

/// `key in (...)`: the key, then the rest after the operator word.
fn split_word<'a>(term: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let mut parts = term.splitn(2, char::is_whitespace);
    let key = parts.next()?.trim();
    let rest = parts.next()?.trim_start();
    let rest = rest.strip_prefix(word)?;
    if rest.starts_with(|c: char| c.is_whitespace() || c == '(') {
        Some((key, rest))
    } else {
        None
    }
}

#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parse `a=b,c!=d`, allowing only the field labels the kind supports,
    /// as kube-apiserver does ("field label not supported").
    pub fn parse(s: &str, kind: &Kind) -> Result<FieldSelector, ApiError> {
        let mut out = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(out));
        }
        for term in s.split(',') {
            let (key, eq, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let key = key.trim();
            let supported = matches!(key, "metadata.name" | "metadata.namespace")
                || kind.field_labels.contains(&key);
            if !supported {
                let known: Vec<String> = ["metadata.name", "metadata.namespace"]
                    .iter()
                    .chain(kind.field_labels.iter())
                    .map(|f| format!("\"{f}\""))
                    .collect();
                return Err(ApiError::BadRequest(format!(
                    "\"{key}\" is not a known field selector: only {}",
                    known.join(", ")
                )));
            }
            out.push((key.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(key, eq, want)| {
            let mut cur = object;
            for part in key.split('.') {
                cur = &cur[part];
            }
            let have = match cur {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                // Absent fields compare as the empty string, as in kube.
                _ => String::new(),
            };
            (have == *want) == *eq
        })
    }

    /// The `metadata.name=X` term, if any: lets a watch or get narrow down.
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, eq, _)| k == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selector_operators() {
        let p = pod(json!({"app": "web", "tier": "fe"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("missing notin (x)", true),
            ("app=web,tier in (fe)", true),
            ("app=web,!missing", true),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&p),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn bad_label_selectors_are_errors() {
        for sel in ["app in web", "a=(", "=x", "app in (a", "a b"] {
            assert!(LabelSelector::parse(sel).is_err(), "{sel}");
        }
    }

    #[test]
    fn field_selectors() {
        let kind = crate::apiserver::resources::by_name("pods").unwrap();
        let p = pod(json!({}));
        assert!(
            FieldSelector::parse("spec.nodeName=n1", kind)
                .unwrap()
                .matches(&p)
        );
        assert!(
            !FieldSelector::parse("status.phase!=Running", kind)
                .unwrap()
                .matches(&p)
        );
        assert!(FieldSelector::parse("spec.bogus=1", kind).is_err());
        assert!(FieldSelector::parse("nonsense", kind).is_err());
    }
}
