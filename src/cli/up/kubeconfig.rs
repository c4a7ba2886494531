//! The kubeconfigs `up` writes: the admin's (system:masters) in the data
//! dir for the user, the node's (system:node:<name>) for the agent, both
//! from the apiserver's own CA (made here first, so the apiserver loads
//! the same one), and optionally a `deckhand` context merged into
//! ~/.kube/config.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use crate::apiserver::pki::{self, Pki};

pub struct Kubeconfigs {
    /// `<D>/admin.kubeconfig`.
    pub admin_path: PathBuf,
    pub admin: String,
    pub node: String,
}

/// Issues (or reuses) the admin and node certificates from the CA under
/// `pki_dir` and writes the admin kubeconfig into `data_dir`.
pub fn write(
    pki_dir: &Path,
    data_dir: &Path,
    server: &str,
    node: &str,
) -> anyhow::Result<Kubeconfigs> {
    let pki = Pki::load_or_create(pki_dir).context("loading the apiserver's CA")?;
    let (cert, key) = pki.admin()?;
    let admin = pki::kubeconfig(server, &pki.ca_pem, &cert, &key);
    let (cert, key) = pki.node(node)?;
    let node = pki::kubeconfig(server, &pki.ca_pem, &cert, &key);
    let admin_path = data_dir.join("admin.kubeconfig");
    pki::write_file(&admin_path, &admin, true)?;
    pki::write_file(&data_dir.join("node.kubeconfig"), &node, true)?;
    Ok(Kubeconfigs {
        admin_path,
        admin,
        node,
    })
}

/// A node kubeconfig (system:node:<node>) for another machine, at `path`.
pub fn write_node(pki_dir: &Path, path: &Path, server: &str, node: &str) -> anyhow::Result<()> {
    let pki = Pki::load_or_create(pki_dir).context("loading the apiserver's CA")?;
    let (cert, key) = pki.node(node)?;
    pki::write_file(
        path,
        &pki::kubeconfig(server, &pki.ca_pem, &cert, &key),
        true,
    )?;
    Ok(())
}

/// A kube client from a kubeconfig's text.
pub async fn client(text: &str) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(text).context("parsing a kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("loading a kubeconfig")?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// `$HOME/.kube/config` (as kubectl finds it without KUBECONFIG).
pub fn user_kubeconfig() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube").join("config"))
}

/// Merges the `deckhand` cluster, user and context of `ours` into the
/// kubeconfig at `path` (made if missing) and makes it current, keeping
/// everything else the file holds.
pub fn merge_into(path: &Path, ours: &str) -> anyhow::Result<()> {
    let ours: Value = serde_saphyr::from_str(ours).context("parsing our kubeconfig")?;
    let mut theirs: Value = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => serde_saphyr::from_str(&text)
            .with_context(|| format!("{} is not a kubeconfig: fix or move it", path.display()))?,
        Ok(_) => json!({}),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    merge(&mut theirs, &ours);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    pki::write_file(path, &to_yaml(&theirs), true)?;
    Ok(())
}

fn merge(theirs: &mut Value, ours: &Value) {
    // Our user is named `admin` in the data dir's kubeconfig; in a shared
    // file that name is too common: it becomes `deckhand-admin` first, so
    // the user's own `admin` is kept.
    let mut ours = ours.clone();
    if let Some(users) = ours["users"].as_array_mut() {
        for u in users.iter_mut().filter(|u| u["name"] == "admin") {
            u["name"] = json!("deckhand-admin");
        }
    }
    if let Some(ctxs) = ours["contexts"].as_array_mut() {
        for c in ctxs.iter_mut().filter(|c| c["context"]["user"] == "admin") {
            c["context"]["user"] = json!("deckhand-admin");
        }
    }
    if !theirs.is_object() {
        *theirs = json!({});
    }
    theirs["apiVersion"] = json!("v1");
    theirs["kind"] = json!("Config");
    for list in ["clusters", "users", "contexts"] {
        let mine = ours[list].as_array().cloned().unwrap_or_default();
        let names: Vec<&Value> = mine.iter().map(|e| &e["name"]).collect();
        let mut kept: Vec<Value> = theirs[list]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !names.contains(&&e["name"]))
            .collect();
        kept.extend(mine.iter().cloned());
        theirs[list] = Value::Array(kept);
    }
    theirs["current-context"] = ours["current-context"].clone();
}

/// Block-style YAML of a JSON value, scalars in JSON syntax (a JSON string
/// is a valid YAML double-quoted scalar), so a user's file stays YAML.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    emit(v, 0, &mut out);
    out
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = Value::String(k.clone()).to_string();
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        emit(v, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        emit(v, indent, out);
                    }
                    _ => out.push_str(&format!("{pad}{key}: {}\n", scalar(v))),
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                let mut inner = String::new();
                emit(item, indent + 2, &mut inner);
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first line of the item goes after the dash.
                        let body = inner.trim_start_matches(' ');
                        out.push_str(&format!("{pad}- {body}"));
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}-\n{inner}"));
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", scalar(v))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "apiVersion: v1
kind: Config
clusters:
- name: deckhand
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: Q0E=
users:
- name: admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
contexts:
- name: deckhand
  context:
    cluster: deckhand
    user: admin
current-context: deckhand
";

    #[test]
    fn merging_keeps_the_users_other_contexts_and_replaces_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod:6443\n\
             users:\n- name: admin\n  user:\n    token: secret\n\
             contexts:\n- name: prod\n  context:\n    cluster: prod\n    user: admin\n\
             current-context: prod\npreferences: {}\n",
        )
        .unwrap();
        merge_into(&path, OURS).unwrap();
        merge_into(&path, OURS).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(v["current-context"], "deckhand", "{text}");
        let names = |l: &str| -> Vec<String> {
            v[l].as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names("clusters"), ["prod", "deckhand"], "{text}");
        assert_eq!(names("users"), ["admin", "deckhand-admin"], "{text}");
        assert_eq!(names("contexts"), ["prod", "deckhand"], "{text}");
        assert_eq!(v["users"][0]["user"]["token"], "secret");
        assert_eq!(v["contexts"][1]["context"]["user"], "deckhand-admin");
        assert_eq!(v["contexts"][0]["context"]["user"], "admin");
        // kube's own parser reads what we wrote.
        kube::config::Kubeconfig::from_yaml(&text).expect("kube parses it");
    }

    #[test]
    fn a_missing_file_becomes_our_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".kube/config");
        merge_into(&path, OURS).unwrap();
        let k = kube::config::Kubeconfig::read_from(&path).unwrap();
        assert_eq!(k.current_context.as_deref(), Some("deckhand"));
        assert_eq!(k.auth_infos[0].name, "deckhand-admin");
    }
}
