use super::*;
use crate::node::podspec::testutil::{first_container, pod};
use serde_json::json;

fn the_pod(container: serde_json::Value) -> Pod {
    pod(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
        "spec": {"terminationGracePeriodSeconds": 30, "containers": [container]},
    }))
}

fn config(
    p: &Pod,
    image_user: Option<&str>,
    envs: Vec<v1::KeyValue>,
) -> Result<v1::ContainerConfig, PodSpecError> {
    let ctx = ContainerContext {
        pod_ips: &[],
        restart_count: 4,
        image_ref: "sha256:0123",
        image_user,
        services: &[],
    };
    container_config(p, first_container(p), &ctx, &NodeContext::default(), envs)
}

fn kv(k: &str, v: &str) -> v1::KeyValue {
    v1::KeyValue {
        key: k.into(),
        value: v.as_bytes().to_vec(),
    }
}

#[test]
fn full_container_config() {
    let p = the_pod(json!({
        "name": "app", "image": "nginx:1.27",
        "command": ["/bin/sh", "-c"], "args": ["echo $(GREETING) $(UNSET) $$(GREETING)"],
        "workingDir": "/srv", "stdin": true, "stdinOnce": true, "tty": true,
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "500m", "memory": "128Mi"}},
    }));
    let envs = vec![kv("GREETING", "hi")];
    let c = config(&p, Some("101"), envs.clone()).unwrap();
    assert_eq!(
        c.metadata.unwrap(),
        v1::ContainerMetadata {
            name: "app".into(),
            attempt: 4
        }
    );
    let image = c.image.unwrap();
    assert_eq!(
        (image.image.as_str(), image.user_specified_image.as_str()),
        ("sha256:0123", "nginx:1.27")
    );
    assert_eq!(c.command, vec!["/bin/sh", "-c"]);
    assert_eq!(c.args, vec!["echo hi $(UNSET) $(GREETING)"]);
    assert_eq!(c.working_dir, "/srv");
    assert_eq!(c.envs, envs);
    assert!(c.stdin && c.stdin_once && c.tty);
    assert_eq!(c.log_path, "app/4.log");
    assert_eq!(
        c.labels.get(labels::CONTAINER_NAME).map(String::as_str),
        Some("app")
    );
    assert_eq!(
        c.annotations
            .get(labels::CONTAINER_RESTART_COUNT)
            .map(String::as_str),
        Some("4")
    );
    assert_eq!(
        c.annotations
            .get(labels::POD_TERMINATION_GRACE_PERIOD)
            .map(String::as_str),
        Some("30")
    );
    let linux = c.linux.unwrap();
    let r = linux.resources.unwrap();
    assert_eq!(
        (
            r.cpu_shares,
            r.cpu_quota,
            r.memory_limit_in_bytes,
            r.oom_score_adj
        ),
        (512, 50_000, 128 << 20, -997)
    );
    let sc = linux.security_context.unwrap();
    assert_eq!(sc.run_as_user, Some(v1::Int64Value { value: 101 }));
}

#[test]
fn stop_signal_from_lifecycle() {
    let p = the_pod(json!({"name": "app", "lifecycle": {"stopSignal": "SIGUSR1"}}));
    assert_eq!(
        config(&p, None, vec![]).unwrap().stop_signal,
        v1::Signal::Sigusr1 as i32
    );
    let p = the_pod(json!({"name": "app"}));
    assert_eq!(
        config(&p, None, vec![]).unwrap().stop_signal,
        v1::Signal::RuntimeDefault as i32
    );
}

#[test]
fn no_command_leaves_the_image_entrypoint() {
    let p = the_pod(json!({"name": "app", "image": "busybox"}));
    let c = config(&p, None, vec![]).unwrap();
    assert!(c.command.is_empty() && c.args.is_empty());
    assert_eq!(c.working_dir, "");
}

#[test]
fn run_as_non_root_with_root_image_is_a_config_error() {
    let p = the_pod(
        json!({"name": "app", "image": "busybox", "securityContext": {"runAsNonRoot": true}}),
    );
    let err = config(&p, None, vec![]).unwrap_err();
    assert_eq!(err.reason, "CreateContainerConfigError");
    assert_eq!(
        err.message,
        "container has runAsNonRoot and image will run as root (pod: \"web_ns(uid-1)\", container: app)"
    );
    assert!(config(&p, Some("65534"), vec![]).is_ok());
}
