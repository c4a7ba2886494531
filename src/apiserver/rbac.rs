//! RBAC, as kube-apiserver's RBAC authorizer does it: a request is allowed
//! iff some ClusterRoleBinding, or some RoleBinding in the request's
//! namespace, names the user (by user, group or service account) and the
//! role it refers to has a rule matching the verb and resource (or
//! non-resource URL), after the static authorizers in `auth`. Also the
//! escalation check: nobody may grant, through a role or a
//! binding, more than they hold themselves unless allowed to `escalate` or
//! `bind`. The default roles and bindings are in `rbac_roles`.

use serde_json::Value;

use crate::apiserver::auth::{self, Attributes, Decision, User};
use crate::apiserver::error::ApiError;
use crate::apiserver::store::{Store, StoreError, Txn, collection_prefix, object_key};

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// Read access to objects, from the store or inside a write transaction.
pub trait Reader {
    fn get(&self, key: &str) -> Result<Option<Value>, StoreError>;
    fn list(&self, prefix: &str) -> Result<Vec<(String, Value)>, StoreError>;
}

impl Reader for Store {
    fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        Store::get(self, key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<(String, Value)>, StoreError> {
        Ok(Store::list(self, prefix, None, usize::MAX)?.1)
    }
}

impl Reader for Txn<'_> {
    fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        Txn::get(self, key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<(String, Value)>, StoreError> {
        Txn::list(self, prefix)
    }
}

/// Whether a binding's subject is this user. Every authenticated user is
/// in `system:authenticated`.
fn subject_matches(subject: &Value, user: &User, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or("");
    match subject["kind"].as_str() {
        Some("User") => user.name == name,
        Some("Group") => name == "system:authenticated" || user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn binds(binding: &Value, user: &User) -> bool {
    let ns = binding["metadata"]["namespace"].as_str().unwrap_or("");
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| subject_matches(s, user, ns))
}

fn role_rules(reader: &dyn Reader, role_ref: &Value, ns: &str) -> Result<Vec<Value>, StoreError> {
    let name = role_ref["name"].as_str().unwrap_or("");
    let key = match role_ref["kind"].as_str() {
        Some("ClusterRole") => object_key(GROUP, "clusterroles", "", name),
        Some("Role") if !ns.is_empty() => object_key(GROUP, "roles", ns, name),
        _ => return Ok(Vec::new()),
    };
    Ok(reader
        .get(&key)?
        .and_then(|r| r["rules"].as_array().cloned())
        .unwrap_or_default())
}

/// Every rule the user holds in `namespace` (cluster-wide ones only when
/// it is empty).
pub fn rules_for(
    reader: &dyn Reader,
    user: &User,
    namespace: &str,
) -> Result<Vec<Value>, StoreError> {
    let mut rules = Vec::new();
    for (_, b) in reader.list(&collection_prefix(GROUP, "clusterrolebindings"))? {
        if binds(&b, user) {
            rules.extend(role_rules(reader, &b["roleRef"], "")?);
        }
    }
    if !namespace.is_empty() {
        let prefix = format!("{}{namespace}/", collection_prefix(GROUP, "rolebindings"));
        for (_, b) in reader.list(&prefix)? {
            if binds(&b, user) {
                rules.extend(role_rules(reader, &b["roleRef"], namespace)?);
            }
        }
    }
    Ok(rules)
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn has(v: &Value, want: &str) -> bool {
    strings(v).any(|s| s == "*" || s == want)
}

fn resource_matches(rule: &Value, resource: &str, subresource: &str) -> bool {
    let combined = if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    };
    strings(&rule["resources"]).any(|r| {
        r == "*"
            || r == combined
            // "pods/*": every subresource of pods (not pods itself).
            || (!subresource.is_empty()
                && r.strip_suffix("/*") == Some(resource))
            // "*/status": that subresource of everything.
            || (!subresource.is_empty()
                && r.strip_prefix("*/") == Some(subresource))
    })
}

/// kube's RuleAllows for a resource request.
pub fn rule_allows(rule: &Value, a: &Attributes<'_>) -> bool {
    if !has(&rule["verbs"], a.verb) || !has(&rule["apiGroups"], a.group) {
        return false;
    }
    if !resource_matches(rule, a.resource, a.subresource) {
        return false;
    }
    let names: Vec<&str> = strings(&rule["resourceNames"]).collect();
    names.is_empty() || names.contains(&a.name)
}

/// kube's RuleAllows for a non-resource URL (`/healthz`, `/apis/*`).
pub fn rule_allows_url(rule: &Value, verb: &str, path: &str) -> bool {
    has(&rule["verbs"], verb)
        && strings(&rule["nonResourceURLs"]).any(|u| {
            u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
        })
}

pub fn allows(reader: &dyn Reader, user: &User, a: &Attributes<'_>) -> Result<bool, StoreError> {
    Ok(rules_for(reader, user, a.namespace)?
        .iter()
        .any(|r| rule_allows(r, a)))
}

pub fn allows_url(
    reader: &dyn Reader,
    user: &User,
    verb: &str,
    path: &str,
) -> Result<bool, StoreError> {
    Ok(rules_for(reader, user, "")?
        .iter()
        .any(|r| rule_allows_url(r, verb, path)))
}

/// Whether `owner` rules cover every permission `servant` grants (kube's
/// validation.Covers): each servant rule is split into one verb x group x
/// resource x name at a time, and each piece must be allowed by an owner
/// rule. A wildcard in the servant is covered only by a wildcard.
pub fn covers(owner: &[Value], servant: &Value) -> bool {
    let list = |f: &str| -> Vec<&str> { strings(&servant[f]).collect() };
    let verbs = list("verbs");
    let urls = list("nonResourceURLs");
    if !urls.is_empty() {
        return verbs.iter().all(|v| {
            urls.iter().all(|u| {
                owner.iter().any(|o| {
                    has(&o["verbs"], v)
                        && strings(&o["nonResourceURLs"]).any(|ou| {
                            ou == "*"
                                || ou == *u
                                || ou.strip_suffix('*').is_some_and(|p| u.starts_with(p))
                        })
                })
            })
        });
    }
    let names = list("resourceNames");
    let names: Vec<&str> = if names.is_empty() { vec![""] } else { names };
    for v in &verbs {
        for g in list("apiGroups") {
            for r in list("resources") {
                for n in &names {
                    let covered = owner.iter().any(|o| {
                        let owner_names: Vec<&str> = strings(&o["resourceNames"]).collect();
                        has(&o["verbs"], v)
                            && has(&o["apiGroups"], g)
                            && strings(&o["resources"]).any(|or| {
                                or == "*"
                                    || or == r
                                    || r.split_once('/').is_some_and(|(res, sub)| {
                                        or.strip_suffix("/*") == Some(res)
                                            || or.strip_prefix("*/") == Some(sub)
                                    })
                            })
                            && (owner_names.is_empty()
                                || (!n.is_empty() && owner_names.contains(n)))
                    });
                    if !covered {
                        return false;
                    }
                }
            }
        }
    }
    true
}

/// Refuse a write of a role or binding that would grant `user` (not an
/// admin) more than they hold, unless RBAC lets them `escalate` (roles) or
/// `bind` (bindings, on the role referred to).
pub fn confirm_no_escalation(
    reader: &dyn Reader,
    user: &User,
    resource: &str,
    ns: &str,
    object: &Value,
) -> Result<(), ApiError> {
    if user.is_admin()
        || !matches!(
            resource,
            "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings"
        )
    {
        return Ok(());
    }
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let held = rules_for(reader, user, ns)?;
    let may = |verb: &str, resource: &str, name: &str| {
        held.iter().any(|r| {
            rule_allows(
                r,
                &Attributes {
                    verb,
                    group: GROUP,
                    resource,
                    subresource: "",
                    namespace: ns,
                    name,
                },
            )
        })
    };
    let (granted, what) = match resource {
        "roles" | "clusterroles" => {
            if may("escalate", resource, name) {
                return Ok(());
            }
            (
                object["rules"].as_array().cloned().unwrap_or_default(),
                format!("{resource} \"{name}\""),
            )
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = &object["roleRef"];
            let role_resource = if role_ref["kind"] == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            let role_name = role_ref["name"].as_str().unwrap_or("");
            if may("bind", role_resource, role_name) {
                return Ok(());
            }
            (
                role_rules(reader, role_ref, ns)?,
                format!("{resource} \"{name}\""),
            )
        }
        _ => return Ok(()),
    };
    if granted.iter().all(|rule| covers(&held, rule)) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "{what} is forbidden: user \"{}\" (groups={:?}) is attempting to grant RBAC permissions not currently held",
        user.name, user.groups
    )))
}

/// The whole authorizer chain, as kube-apiserver's `Node,RBAC`: the
/// static rules (system:masters, the Node authorizer) first, then RBAC.
pub fn authorize_with(
    reader: &dyn Reader,
    user: &User,
    a: &Attributes<'_>,
) -> Result<Decision, ApiError> {
    match auth::authorize(user, a) {
        Ok(d) => Ok(d),
        Err(denied) => {
            if allows(reader, user, a)? {
                Ok(Decision::Allow)
            } else {
                Err(denied)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs<'a>(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: &'a str,
        name: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            group,
            resource,
            subresource: sub,
            namespace: "ns",
            name,
        }
    }

    #[test]
    fn rules_match_like_kube() {
        let r =
            json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]});
        assert!(rule_allows(&r, &attrs("get", "", "pods", "", "p")));
        assert!(rule_allows(&r, &attrs("get", "", "pods", "log", "p")));
        assert!(!rule_allows(&r, &attrs("get", "", "pods", "exec", "p")));
        assert!(!rule_allows(&r, &attrs("delete", "", "pods", "", "p")));
        assert!(!rule_allows(&r, &attrs("get", "apps", "pods", "", "p")));
        let named = json!({"apiGroups": ["*"], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["*"]});
        assert!(rule_allows(
            &named,
            &attrs("update", "", "configmaps", "", "a")
        ));
        assert!(!rule_allows(
            &named,
            &attrs("update", "", "configmaps", "", "b")
        ));
        assert!(!rule_allows(
            &named,
            &attrs("list", "", "configmaps", "", "")
        ));
        let subs =
            json!({"apiGroups": [""], "resources": ["pods/*", "*/status"], "verbs": ["get"]});
        assert!(rule_allows(&subs, &attrs("get", "", "pods", "exec", "")));
        assert!(rule_allows(&subs, &attrs("get", "", "nodes", "status", "")));
        assert!(!rule_allows(&subs, &attrs("get", "", "pods", "", "")));
        let urls = json!({"nonResourceURLs": ["/healthz", "/apis/*"], "verbs": ["get"]});
        assert!(rule_allows_url(&urls, "get", "/healthz"));
        assert!(rule_allows_url(&urls, "get", "/apis/apps/v1"));
        assert!(!rule_allows_url(&urls, "get", "/api"));
        assert!(!rule_allows_url(&urls, "post", "/healthz"));
    }

    #[test]
    fn covering() {
        let owner = vec![
            json!({"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list"]}),
        ];
        assert!(covers(
            &owner,
            &json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]})
        ));
        assert!(!covers(
            &owner,
            &json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]})
        ));
        assert!(!covers(
            &owner,
            &json!({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]})
        ));
        assert!(!covers(
            &owner,
            &json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
        ));
        let admin = vec![json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})];
        assert!(covers(
            &admin,
            &json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})
        ));
        assert!(!covers(
            &admin,
            &json!({"nonResourceURLs": ["/x"], "verbs": ["get"]})
        ));
    }
}
