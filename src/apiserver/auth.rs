//! Authentication (client certificates signed by our CA, static bearer
//! tokens in kube-apiserver's `--token-auth-file` CSV format) and
//! authorization: system:masters may do anything; node identities get what
//! the Node authorizer + NodeRestriction admission allow a kubelet (their own
//! Node and Lease, status of pods bound to them, events); anyone else only
//! discovery. Anonymous requests never get past authentication.

use std::collections::HashMap;
use std::path::Path;

use crate::apiserver::error::{ApiError, qualified};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }

    /// `system:node:<name>` in group `system:nodes` is a node identity.
    pub fn node_name(&self) -> Option<&str> {
        if !self.groups.iter().any(|g| g == "system:nodes") {
            return None;
        }
        self.name
            .strip_prefix("system:node:")
            .filter(|n| !n.is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Format {
        path: String,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Default)]
pub struct Tokens(HashMap<String, User>);

/// Split one CSV line, honouring double quotes (groups are one quoted field).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.push(cur);
    Ok(out)
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, message)| AuthError::Format {
            path: path.display().to_string(),
            line,
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Tokens, (usize, String)> {
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f = csv_fields(line).map_err(|e| (n + 1, e))?;
            if f.len() < 3 || f[0].is_empty() || f[1].is_empty() {
                return Err((n + 1, "expected token,user,uid[,\"group1,group2\"]".into()));
            }
            let groups = f
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            map.insert(
                f[0].clone(),
                User {
                    name: f[1].clone(),
                    uid: f[2].clone(),
                    groups,
                },
            );
        }
        Ok(Tokens(map))
    }

    pub fn user(&self, token: &str) -> Option<&User> {
        self.0.get(token)
    }
}

/// The user a verified client certificate names: CN is the user, O the groups.
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let subject = crate::x509::subject(der)?;
    Some(User {
        name: subject.user,
        uid: String::new(),
        groups: subject.groups,
    })
}

/// What a request wants to do, for authorization.
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Attributes that can move to a blocking task.
#[derive(Debug, Clone, Default)]
pub struct OwnedAttributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl OwnedAttributes {
    pub fn of(a: &Attributes<'_>) -> OwnedAttributes {
        OwnedAttributes {
            verb: a.verb.into(),
            group: a.group.into(),
            resource: a.resource.into(),
            subresource: a.subresource.into(),
            namespace: a.namespace.into(),
            name: a.name.into(),
        }
    }

    pub fn borrow(&self) -> Attributes<'_> {
        Attributes {
            verb: &self.verb,
            group: &self.group,
            resource: &self.resource,
            subresource: &self.subresource,
            namespace: &self.namespace,
            name: &self.name,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed only if the pod involved is bound to this node.
    IfPodOnNode(String),
    /// A read allowed only of one object that a pod bound to this node
    /// uses (a secret or config map in its volumes, env or pull secrets).
    IfUsedOnNode(String),
    /// A create allowed only if the new object has this name (a node
    /// registering its own Node or Lease).
    IfNamed(String),
}

pub fn forbidden(user: &User, a: &Attributes<'_>) -> ApiError {
    let resource = if a.subresource.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let what = if a.name.is_empty() {
        qualified(a.group, a.resource)
    } else {
        format!("{} \"{}\"", qualified(a.group, a.resource), a.name)
    };
    ApiError::ForbiddenOn(Box::new(crate::apiserver::error::ForbiddenOn {
        message: format!(
            "{what} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            user.name, a.verb, a.group
        ),
        group: a.group.to_string(),
        resource: a.resource.to_string(),
        name: a.name.to_string(),
        causes: Vec::new(),
    }))
}

pub fn authorize(user: &User, a: &Attributes<'_>) -> Result<Decision, ApiError> {
    if user.is_admin() {
        return Ok(Decision::Allow);
    }
    let Some(node) = user.node_name() else {
        return Err(forbidden(user, a));
    };
    let read = matches!(a.verb, "get" | "list" | "watch");
    let allowed = match (a.group, a.resource, a.subresource) {
        // Secrets and config maps: only those its pods use (the Node
        // authorizer's graph rule), one object at a time.
        ("", "secrets" | "configmaps", "") if read => {
            return Ok(Decision::IfUsedOnNode(node.into()));
        }
        // Logs and streams are the kubelet's own to serve, not to ask for.
        ("", "pods", "log" | "exec" | "attach" | "portforward") => false,
        ("", "nodes", "proxy") => false,
        _ if read => true,
        // Its own CSINode (kube's Node authorizer: get, create, update,
        // patch, delete).
        ("storage.k8s.io", "csinodes", "") => {
            if a.verb == "create" && a.name.is_empty() {
                return Ok(Decision::IfNamed(node.into()));
            }
            matches!(a.verb, "update" | "patch" | "delete") && a.name == node
        }
        ("", "nodes", _) if a.verb == "create" && a.name.is_empty() => {
            return Ok(Decision::IfNamed(node.into()));
        }
        ("", "nodes", _) => a.name == node,
        ("coordination.k8s.io", "leases", "") if a.namespace == "kube-node-lease" => {
            if a.verb == "create" && a.name.is_empty() {
                return Ok(Decision::IfNamed(node.into()));
            }
            a.name == node
        }
        ("", "events", "") | ("events.k8s.io", "events", "") => {
            matches!(a.verb, "create" | "update" | "patch")
        }
        ("", "pods", "status") if matches!(a.verb, "update" | "patch") => {
            return Ok(Decision::IfPodOnNode(node.into()));
        }
        // A kubelet's webhook authentication and authorization (kube's
        // NodeRules).
        ("authentication.k8s.io", "tokenreviews", "")
        | ("authorization.k8s.io", "subjectaccessreviews", "")
            if a.verb == "create" =>
        {
            true
        }
        // Tokens for its pods' service accounts (checked in the handler).
        ("", "serviceaccounts", "token") if a.verb == "create" => {
            return Ok(Decision::IfPodOnNode(node.into()));
        }
        // The claims its pods mount and their volumes (kube's NodeRules).
        ("", "persistentvolumeclaims" | "persistentvolumes", "") => a.verb == "get",
        ("", "pods", "") if a.verb == "delete" => {
            return Ok(Decision::IfPodOnNode(node.into()));
        }
        _ => false,
    };
    if allowed {
        Ok(Decision::Allow)
    } else {
        Err(forbidden(user, a))
    }
}

/// Whether `pod` uses the secret or config map `name` (of `resource`).
pub fn pod_uses(pod: &serde_json::Value, resource: &str, name: &str) -> bool {
    use serde_json::Value;
    let spec = &pod["spec"];
    let is = |v: &Value| v.as_str() == Some(name);
    let secret = resource == "secrets";
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    for v in volumes {
        let direct = if secret {
            is(&v["secret"]["secretName"])
        } else {
            is(&v["configMap"]["name"])
        };
        let projected = v["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|src| is(&src[if secret { "secret" } else { "configMap" }]["name"]));
        if direct || projected {
            return true;
        }
    }
    if secret
        && spec["imagePullSecrets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| is(&r["name"]))
    {
        return true;
    }
    let (key_ref, from_ref) = if secret {
        ("secretKeyRef", "secretRef")
    } else {
        ("configMapKeyRef", "configMapRef")
    };
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().into_iter().flatten())
        .any(|c| {
            c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| is(&e["valueFrom"][key_ref]["name"]))
                || c["envFrom"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| is(&e[from_ref]["name"]))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_format() {
        let t = Tokens::parse(
            "# comment\nabc,alice,1,\"system:masters,dev\"\nxyz,system:node:n1,2,system:nodes\n",
        )
        .unwrap();
        let alice = t.user("abc").unwrap();
        assert!(alice.is_admin());
        assert_eq!(alice.groups, vec!["system:masters", "dev"]);
        assert_eq!(t.user("xyz").unwrap().node_name(), Some("n1"));
        assert!(t.user("nope").is_none());
        assert!(Tokens::parse("onlytoken\n").is_err());
        assert!(Tokens::parse("a,b,c,\"unterminated\n").is_err());
    }

    #[test]
    fn node_rules() {
        let node = User {
            name: "system:node:n1".into(),
            uid: String::new(),
            groups: vec!["system:nodes".into()],
        };
        let attrs = |verb, resource, sub, ns, name| Attributes {
            verb,
            group: "",
            resource,
            subresource: sub,
            namespace: ns,
            name,
        };
        assert!(authorize(&node, &attrs("patch", "nodes", "status", "", "n1")).is_ok());
        assert!(authorize(&node, &attrs("patch", "nodes", "status", "", "n2")).is_err());
        assert!(authorize(&node, &attrs("create", "configmaps", "", "default", "")).is_err());
        assert_eq!(
            authorize(&node, &attrs("patch", "pods", "status", "default", "p")).unwrap(),
            Decision::IfPodOnNode("n1".into())
        );
        assert!(authorize(&node, &attrs("list", "pods", "", "", "")).is_ok());
        assert_eq!(
            authorize(&node, &attrs("get", "secrets", "", "default", "s")).unwrap(),
            Decision::IfUsedOnNode("n1".into())
        );
        assert_eq!(
            authorize(&node, &attrs("create", "nodes", "", "", "")).unwrap(),
            Decision::IfNamed("n1".into())
        );
    }
}
