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
        m.contains("no IPs") && m.contains("range full") && m.contains("boom") && m.contains("11"),
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
