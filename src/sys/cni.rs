//! CNI: loading the network configuration and executing plugins as the CNI
//! spec describes (environment variables in, network config on stdin, result
//! or error JSON on stdout). A `.conflist` is run as a chain: each plugin gets
//! the previous one's result as `prevResult`; DEL runs the chain in reverse.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("no CNI network configuration in {0}")]
    NoConfig(PathBuf),
    #[error("CNI config {path}: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error("CNI plugin {plugin:?} not found in {dirs:?}")]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("CNI plugin {plugin} {command} failed: {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        message: String,
    },
    #[error("CNI plugin {plugin} {command} did not finish within {after:?}; killed")]
    Timeout {
        plugin: String,
        command: &'static str,
        after: std::time::Duration,
    },
    #[error("CNI plugin {plugin}: {source}")]
    Exec {
        plugin: String,
        #[source]
        source: std::io::Error,
    },
}

/// A network configuration list, whether it came from a `.conflist` or a
/// single-plugin `.conf`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
    pub source: PathBuf,
}

/// The config files in `dir`, lexically ordered (the kubelet and containerd
/// pick the first).
fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The first valid network configuration in `dir`, in lexical order.
pub fn load_default(dir: &Path) -> Result<NetworkList, CniError> {
    let files = config_files(dir).map_err(|e| CniError::BadConfig {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut last_error = None;
    for file in files {
        match load_file(&file) {
            Ok(list) => return Ok(list),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "skipping CNI config");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| CniError::NoConfig(dir.to_path_buf())))
}

pub fn load_file(path: &Path) -> Result<NetworkList, CniError> {
    let bad = |message: String| CniError::BadConfig {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    parse(&text, path.extension().is_some_and(|e| e == "conflist"))
        .map_err(bad)
        .map(|mut l| {
            l.source = path.to_path_buf();
            l
        })
}

/// Parses a config; `conflist` says whether it must be a list.
pub fn parse(text: &str, conflist: bool) -> Result<NetworkList, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let name = value["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or("missing \"name\"")?
        .to_string();
    let cni_version = value["cniVersion"].as_str().unwrap_or("0.4.0").to_string();
    let plugins = if let Some(plugins) = value.get("plugins") {
        let plugins = plugins
            .as_array()
            .ok_or("\"plugins\" is not a list")?
            .clone();
        if plugins.is_empty() {
            return Err("\"plugins\" is empty".into());
        }
        plugins
    } else if conflist {
        return Err("missing \"plugins\"".into());
    } else {
        vec![value.clone()]
    };
    for plugin in &plugins {
        if plugin["type"].as_str().is_none_or(str::is_empty) {
            return Err("a plugin has no \"type\"".into());
        }
    }
    Ok(NetworkList {
        name,
        cni_version,
        plugins,
        source: PathBuf::new(),
    })
}

/// A port mapping in the `portMappings` capability's shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i32,
    pub container_port: i32,
    pub protocol: String,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty", default)]
    pub host_ip: String,
}

/// What identifies one attachment of a sandbox to a network.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// CNI_ARGS pairs (IgnoreUnknown=1 is added first).
    pub args: Vec<(String, String)>,
    pub port_mappings: Vec<PortMapping>,
}

/// Where plugins and how to run them.
#[derive(Debug, Clone)]
pub struct Exec {
    pub bin_dirs: Vec<PathBuf>,
    /// How long one plugin may run: a hung plugin is killed, so it cannot
    /// hold its sandbox's operation for ever.
    pub timeout: std::time::Duration,
}

impl Exec {
    fn find(&self, plugin: &str) -> Result<PathBuf, CniError> {
        if !plugin.contains('/') {
            for dir in &self.bin_dirs {
                let path = dir.join(plugin);
                if path.is_file() {
                    return Ok(path);
                }
            }
        }
        Err(CniError::PluginNotFound {
            plugin: plugin.to_string(),
            dirs: self.bin_dirs.clone(),
        })
    }

    /// ADD through the chain; returns the final result.
    pub async fn add(&self, list: &NetworkList, att: &Attachment) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let conf = plugin_config(list, plugin, prev.as_ref(), att);
            let out = self.invoke("ADD", plugin, &conf, att).await?;
            prev = Some(out.unwrap_or_else(|| json!({"cniVersion": list.cni_version})));
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL through the chain in reverse; `prev` is the cached ADD result (if
    /// any). Every plugin is tried even when one fails, so one broken plugin
    /// does not leak the IPs and rules of the others; the first error is
    /// returned.
    pub async fn del(
        &self,
        list: &NetworkList,
        att: &Attachment,
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        let mut first_error = None;
        for plugin in list.plugins.iter().rev() {
            let conf = plugin_config(list, plugin, prev, att);
            if let Err(e) = self.invoke("DEL", plugin, &conf, att).await {
                tracing::warn!(error = %e, "CNI DEL");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn invoke(
        &self,
        command: &'static str,
        plugin: &Value,
        conf: &Value,
        att: &Attachment,
    ) -> Result<Option<Value>, CniError> {
        let kind = plugin["type"].as_str().unwrap_or_default().to_string();
        let binary = self.find(&kind)?;
        let exec_err = |source| CniError::Exec {
            plugin: kind.clone(),
            source,
        };
        let path = std::env::join_paths(&self.bin_dirs).unwrap_or_default();
        let mut child = tokio::process::Command::new(&binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &att.container_id)
            .env("CNI_NETNS", &att.netns)
            .env("CNI_IFNAME", &att.ifname)
            .env("CNI_PATH", path)
            .env("CNI_ARGS", cni_args(&att.args))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(exec_err)?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let body = serde_json::to_vec(conf).expect("JSON values serialize");
        // A plugin may exit without reading stdin; its exit status says more
        // than our broken pipe would.
        let _ = stdin.write_all(&body).await;
        drop(stdin);
        // Dropping the wait on timeout drops the child: kill_on_drop kills it.
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| CniError::Timeout {
                plugin: kind.clone(),
                command,
                after: self.timeout,
            })?
            .map_err(exec_err)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(CniError::Plugin {
                plugin: kind,
                command,
                message: failure_message(
                    &stdout,
                    &String::from_utf8_lossy(&output.stderr),
                    output.status,
                ),
            });
        }
        if command == "ADD" {
            let result = serde_json::from_str(&stdout).map_err(|e| CniError::Plugin {
                plugin: kind,
                command,
                message: format!("unparsable result: {e}: {stdout}"),
            })?;
            return Ok(Some(result));
        }
        Ok(None)
    }
}

/// The config one plugin of the chain receives on stdin.
pub fn plugin_config(
    list: &NetworkList,
    plugin: &Value,
    prev: Option<&Value>,
    att: &Attachment,
) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = json!(list.name);
    conf["cniVersion"] = json!(list.cni_version);
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    let wants_ports = plugin["capabilities"]["portMappings"].as_bool() == Some(true);
    if wants_ports && !att.port_mappings.is_empty() {
        conf["runtimeConfig"] = json!({"portMappings": att.port_mappings});
    }
    conf
}

fn cni_args(args: &[(String, String)]) -> String {
    std::iter::once("IgnoreUnknown=1".to_string())
        .chain(args.iter().map(|(k, v)| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(";")
}

/// A plugin's failure: the spec's error JSON ({code, msg, details}) when it
/// printed one, plus its stderr, so the caller sees why.
fn failure_message(stdout: &str, stderr: &str, status: std::process::ExitStatus) -> String {
    let mut message = match serde_json::from_str::<Value>(stdout) {
        Ok(v) if v.get("msg").is_some() => {
            let mut m = v["msg"].as_str().unwrap_or_default().to_string();
            if let Some(d) = v["details"].as_str().filter(|d| !d.is_empty()) {
                m.push_str(&format!(" ({d})"));
            }
            if let Some(code) = v["code"].as_u64() {
                m.push_str(&format!(" [code {code}]"));
            }
            m
        }
        _ if !stdout.trim().is_empty() => stdout.trim().to_string(),
        _ => status.to_string(),
    };
    if !stderr.trim().is_empty() {
        message.push_str(&format!("; stderr: {}", stderr.trim()));
    }
    message
}

/// The IPs a result assigns to `ifname` (ones bound to no interface count
/// too), without prefix length, IPv4 first as containerd orders them.
pub fn result_ips(result: &Value, ifname: &str) -> Vec<String> {
    let interfaces = result["interfaces"].as_array();
    let mut ips: Vec<std::net::IpAddr> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|ip| match (ip["interface"].as_u64(), interfaces) {
            (Some(i), Some(ifs)) => ifs
                .get(i as usize)
                .is_none_or(|iface| iface["name"].as_str() == Some(ifname)),
            _ => true,
        })
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect();
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips.dedup();
    ips.into_iter().map(|ip| ip.to_string()).collect()
}
#[cfg(test)]
#[path = "cni_tests.rs"]
mod tests;
