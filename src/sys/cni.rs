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
mod tests {
    use super::*;

    fn att() -> Attachment {
        Attachment {
            container_id: "abc".into(),
            netns: "/run/ns".into(),
            ifname: "eth0".into(),
            args: vec![("K8S_POD_NAME".into(), "p".into())],
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
        }
    }

    #[test]
    fn parses_lists_and_single_configs() {
        let l = parse(
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
            true,
        )
        .unwrap();
        assert_eq!((l.name.as_str(), l.plugins.len()), ("n", 2));
        let c = parse(
            r#"{"cniVersion":"0.4.0","name":"n","type":"bridge"}"#,
            false,
        )
        .unwrap();
        assert_eq!(c.plugins[0]["type"], "bridge");
        assert!(parse(r#"{"name":"n","type":"bridge"}"#, true).is_err());
        assert!(parse(r#"{"name":"n","plugins":[]}"#, true).is_err());
        assert!(parse(r#"{"name":"n","plugins":[{}]}"#, true).is_err());
        assert!(parse(r#"{"type":"bridge"}"#, false).is_err());
        assert!(parse("not json", false).is_err());
    }

    #[test]
    fn first_config_in_lexical_order_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_default(dir.path()),
            Err(CniError::NoConfig(_))
        ));
        std::fs::write(
            dir.path().join("20-b.conflist"),
            r#"{"name":"b","plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("10-a.conf"), r#"{"name":"a","type":"x"}"#).unwrap();
        std::fs::write(dir.path().join("00-readme.txt"), "ignored").unwrap();
        assert_eq!(load_default(dir.path()).unwrap().name, "a");
        std::fs::write(dir.path().join("05-broken.conf"), "{").unwrap();
        assert_eq!(load_default(dir.path()).unwrap().name, "a");
    }

    #[test]
    fn plugin_config_chains_and_passes_capabilities() {
        let l = parse(r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#, true).unwrap();
        let first = plugin_config(&l, &l.plugins[0], None, &att());
        assert_eq!(first["name"], "n");
        assert!(first.get("prevResult").is_none());
        assert!(first.get("runtimeConfig").is_none());
        let prev = json!({"ips": []});
        let second = plugin_config(&l, &l.plugins[1], Some(&prev), &att());
        assert_eq!(second["prevResult"], prev);
        assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert_eq!(
            second["runtimeConfig"]["portMappings"][0]["containerPort"],
            80
        );
        assert_eq!(cni_args(&att().args), "IgnoreUnknown=1;K8S_POD_NAME=p");
    }

    #[test]
    fn result_ips_for_the_pod_interface_ipv4_first() {
        let r = json!({
            "interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/x"}],
            "ips": [
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.0.0.5/24", "interface": 2, "gateway": "10.0.0.1"},
                {"address": "10.9.9.9/24", "interface": 0}
            ]
        });
        assert_eq!(result_ips(&r, "eth0"), vec!["10.0.0.5", "fd00::5"]);
        assert!(result_ips(&json!({}), "eth0").is_empty());
    }

    #[test]
    fn failure_message_carries_error_json_and_stderr() {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(1 << 8);
        let m = failure_message(
            r#"{"code":11,"msg":"no IPs","details":"range full"}"#,
            "boom",
            status,
        );
        assert!(
            m.contains("no IPs")
                && m.contains("range full")
                && m.contains("boom")
                && m.contains("11"),
            "{m}"
        );
        assert!(failure_message("", "", status).contains("exit status"));
    }

    /// Tests that write and run fake plugins take turns: a fork in one while
    /// the other still has a script open for writing makes exec fail with
    /// ETXTBSY.
    static FAKE_PLUGINS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Writes an executable plugin that logs its command, env and stdin to
    /// `log` and answers with `answer` (or fails when FAIL is in its name).
    fn fake_plugin(dir: &Path, name: &str, log: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let script = format!(
            r#"#!/bin/sh
conf=$(cat)
printf '%s %s %s %s %s %s\n' "$CNI_COMMAND" "{name}" "$CNI_IFNAME" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_ARGS" >> {log}
printf '%s\n' "$conf" >> {log}.stdin
case "{name}" in
  *fail*) echo '{{"code":7,"msg":"boom","details":"it broke"}}'; echo "plugin stderr" >&2; exit 1;;
esac
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion":"1.0.0","ips":[{{"address":"10.0.0.{n}/24"}}],"from":"{name}"}}'
fi
"#,
            log = log.display(),
            n = name.len(),
        );
        let path = dir.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn add_chains_prev_results_and_del_runs_in_reverse() {
        let _turn = FAKE_PLUGINS.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fake_plugin(dir.path(), "first", &log);
        fake_plugin(dir.path(), "second", &log);
        let list = parse(
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"first"},{"type":"second","capabilities":{"portMappings":true}}]}"#,
            true,
        )
        .unwrap();
        let exec = Exec {
            bin_dirs: vec![PathBuf::from("/nonexistent"), dir.path().to_path_buf()],
            timeout: std::time::Duration::from_secs(20),
        };
        let result = exec.add(&list, &att()).await.unwrap();
        assert_eq!(result["from"], "second");
        let calls = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = calls.lines().collect();
        assert_eq!(
            lines,
            vec![
                "ADD first eth0 abc /run/ns IgnoreUnknown=1;K8S_POD_NAME=p",
                "ADD second eth0 abc /run/ns IgnoreUnknown=1;K8S_POD_NAME=p",
            ]
        );
        let stdins: Vec<Value> = std::fs::read_to_string(log.with_extension("stdin"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(stdins[0].get("prevResult").is_none());
        assert_eq!(stdins[1]["prevResult"]["from"], "first");
        assert_eq!(
            stdins[1]["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );

        exec.del(&list, &att(), Some(&result)).await.unwrap();
        let calls = std::fs::read_to_string(&log).unwrap();
        let dels: Vec<&str> = calls
            .lines()
            .skip(2)
            .map(|l| &l[..l.find(" eth0").unwrap()])
            .collect();
        assert_eq!(dels, vec!["DEL second", "DEL first"]);
    }

    #[tokio::test]
    async fn plugin_failures_carry_the_error_json_and_stderr() {
        let _turn = FAKE_PLUGINS.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fake_plugin(dir.path(), "ok", &log);
        fake_plugin(dir.path(), "will-fail", &log);
        let list = parse(
            r#"{"name":"n","plugins":[{"type":"will-fail"},{"type":"ok"}]}"#,
            true,
        )
        .unwrap();
        let exec = Exec {
            bin_dirs: vec![dir.path().to_path_buf()],
            timeout: std::time::Duration::from_secs(20),
        };
        let err = exec.add(&list, &att()).await.unwrap_err().to_string();
        assert!(
            err.contains("will-fail")
                && err.contains("boom")
                && err.contains("it broke")
                && err.contains("plugin stderr"),
            "{err}"
        );
        // The chain stopped at the failure.
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
        // DEL tries every plugin even when one fails, and reports the failure.
        let err = exec.del(&list, &att(), None).await.unwrap_err().to_string();
        assert!(err.contains("boom"), "{err}");
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
        let missing = parse(r#"{"name":"n","type":"nope"}"#, false).unwrap();
        assert!(matches!(
            exec.add(&missing, &att()).await,
            Err(CniError::PluginNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_hung_plugin_is_killed_at_its_timeout() {
        use std::os::unix::fs::PermissionsExt;
        let _turn = FAKE_PLUGINS.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let path = dir.path().join("hangs");
        // exec: the shell becomes the sleep, so its pid is the child's.
        let script = format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 600\n",
            pid_file.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let list = parse(r#"{"name":"n","type":"hangs"}"#, false).unwrap();
        let exec = Exec {
            bin_dirs: vec![dir.path().to_path_buf()],
            timeout: std::time::Duration::from_millis(300),
        };
        let err = exec.add(&list, &att()).await.unwrap_err();
        assert!(
            matches!(err, CniError::Timeout { command: "ADD", .. }),
            "{err}"
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed and reaped: the pid is gone (kill_on_drop, then tokio's reaper).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state.contains(") Z ") {
                break; // killed, waiting for the reaper
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the hung plugin (pid {pid}) was not killed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
