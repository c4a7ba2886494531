use super::*;
use crate::node::podspec::testutil::{first_container, pod_with_spec};
use serde_json::json;
use v1::security_profile::ProfileType;

fn node() -> NodeContext {
    NodeContext::default()
}

fn csc(
    pod: &Pod,
    image_user: Option<&str>,
) -> Result<v1::LinuxContainerSecurityContext, PodSpecError> {
    let (uid, name) = image_user_of(image_user);
    container_security_context(pod, first_container(pod), &node(), uid, &name)
}

fn image_user_of(u: Option<&str>) -> (Option<i64>, String) {
    image_user(u)
}

#[test]
fn image_users() {
    assert_eq!(image_user(None), (Some(0), String::new()));
    assert_eq!(image_user(Some("")), (Some(0), String::new()));
    assert_eq!(image_user(Some("1000")), (Some(1000), String::new()));
    assert_eq!(image_user(Some("1000:1000")), (Some(1000), String::new()));
    assert_eq!(image_user(Some("nobody")), (None, "nobody".into()));
    assert_eq!(image_user(Some("nobody:nogroup")), (None, "nobody".into()));
}

#[test]
fn run_as_non_root_checks() {
    let p = pod_with_spec(json!({
        "securityContext": {"runAsNonRoot": true},
        "containers": [{"name": "c", "image": "busybox"}],
    }));
    let c = first_container(&p);
    let err = verify_run_as_non_root(&p, c, Some(0), "").unwrap_err();
    assert_eq!(err.reason, "CreateContainerConfigError");
    assert_eq!(
        err.message,
        "container has runAsNonRoot and image will run as root (pod: \"web_ns(uid-1)\", container: c)"
    );
    let err = verify_run_as_non_root(&p, c, None, "nobody").unwrap_err();
    assert_eq!(
        err.message,
        "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: \"web_ns(uid-1)\", container: c)"
    );
    assert!(verify_run_as_non_root(&p, c, Some(1000), "").is_ok());

    // The container's runAsUser decides, whatever the image says.
    let p = pod_with_spec(json!({
        "securityContext": {"runAsNonRoot": true},
        "containers": [{"name": "c", "securityContext": {"runAsUser": 0}}],
    }));
    let err = verify_run_as_non_root(&p, first_container(&p), Some(1000), "").unwrap_err();
    assert_eq!(
        err.message,
        "container's runAsUser breaks non-root policy (pod: \"web_ns(uid-1)\", container: c)"
    );
    let p = pod_with_spec(json!({
        "securityContext": {"runAsNonRoot": true, "runAsUser": 0},
        "containers": [{"name": "c", "securityContext": {"runAsUser": 1000}}],
    }));
    assert!(verify_run_as_non_root(&p, first_container(&p), Some(0), "").is_ok());
    // runAsNonRoot false or unset: nothing checked.
    let p = pod_with_spec(json!({
        "containers": [{"name": "c", "securityContext": {"runAsNonRoot": false}}],
    }));
    assert!(verify_run_as_non_root(&p, first_container(&p), Some(0), "").is_ok());
}

#[test]
fn pod_context_merges_into_container() {
    let p = pod_with_spec(json!({
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000,
                            "supplementalGroups": [4000, 5000], "seLinuxOptions": {"level": "s0:c1"}},
        "containers": [{"name": "c", "securityContext": {
            "runAsGroup": 7, "privileged": false, "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}],
    }));
    let sc = csc(&p, Some("0")).unwrap();
    assert_eq!(sc.run_as_user, Some(v1::Int64Value { value: 1000 }));
    assert_eq!(sc.run_as_group, Some(v1::Int64Value { value: 7 }));
    assert_eq!(sc.run_as_username, "");
    assert_eq!(sc.supplemental_groups, vec![2000, 4000, 5000]);
    assert!(sc.readonly_rootfs);
    assert!(sc.no_new_privs);
    assert!(!sc.privileged);
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.add_capabilities, vec!["NET_ADMIN"]);
    assert_eq!(caps.drop_capabilities, vec!["ALL"]);
    assert_eq!(sc.selinux_options.unwrap().level, "s0:c1");
    assert_eq!(sc.masked_paths.len(), DEFAULT_MASKED_PATHS.len());
    assert_eq!(sc.readonly_paths, DEFAULT_READONLY_PATHS);
    let ns = sc.namespace_options.unwrap();
    assert_eq!(ns.network, v1::NamespaceMode::Pod as i32);
    assert_eq!(ns.pid, v1::NamespaceMode::Container as i32);
    assert_eq!(ns.ipc, v1::NamespaceMode::Pod as i32);
    assert_eq!(
        ns.userns_options.unwrap().mode,
        v1::NamespaceMode::Node as i32
    );
}

#[test]
fn image_user_fills_run_as() {
    let p = pod_with_spec(json!({"containers": [{"name": "c"}]}));
    let sc = csc(&p, Some("1234:5")).unwrap();
    assert_eq!(sc.run_as_user, Some(v1::Int64Value { value: 1234 }));
    let sc = csc(&p, Some("nobody")).unwrap();
    assert_eq!(sc.run_as_user, None);
    assert_eq!(sc.run_as_username, "nobody");
    assert!(!sc.no_new_privs, "allowPrivilegeEscalation unset");
    assert!(sc.capabilities.is_none());
}

#[test]
fn proc_mount_unmasked_clears_paths() {
    let p = pod_with_spec(
        json!({"containers": [{"name": "c", "securityContext": {"procMount": "Unmasked"}}]}),
    );
    let sc = csc(&p, None).unwrap();
    assert!(sc.masked_paths.is_empty());
    assert!(sc.readonly_paths.is_empty());
}

#[test]
fn seccomp_profiles() {
    let p = pod_with_spec(json!({"containers": [{"name": "c"}]}));
    assert_eq!(
        csc(&p, None).unwrap().seccomp.unwrap().profile_type,
        ProfileType::Unconfined as i32
    );
    let with_default = NodeContext {
        seccomp_default: true,
        ..Default::default()
    };
    let sc =
        container_security_context(&p, first_container(&p), &with_default, Some(0), "").unwrap();
    assert_eq!(
        sc.seccomp.unwrap().profile_type,
        ProfileType::RuntimeDefault as i32
    );

    let p = pod_with_spec(json!({
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "prof.json"}}}],
    }));
    let s = csc(&p, None).unwrap().seccomp.unwrap();
    assert_eq!(s.profile_type, ProfileType::Localhost as i32);
    assert_eq!(s.localhost_ref, "/var/lib/kubelet/seccomp/prof.json");

    let p = pod_with_spec(json!({
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c"}],
    }));
    assert_eq!(
        csc(&p, None).unwrap().seccomp.unwrap().profile_type,
        ProfileType::RuntimeDefault as i32
    );
    let p = pod_with_spec(json!({
        "containers": [{"name": "c", "securityContext": {"seccompProfile": {"type": "Localhost"}}}],
    }));
    assert_eq!(
        csc(&p, None).unwrap_err().message,
        "localhostProfile must be set if seccompProfile type is Localhost."
    );
}

#[test]
fn apparmor_profiles() {
    let p = pod_with_spec(json!({
        "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-deny"}},
        "containers": [{"name": "c"}],
    }));
    let sc = csc(&p, None).unwrap();
    let a = sc.apparmor.clone().unwrap();
    assert_eq!(a.profile_type, ProfileType::Localhost as i32);
    assert_eq!(a.localhost_ref, "k8s-deny");
    #[allow(deprecated)]
    let legacy = sc.apparmor_profile;
    assert_eq!(legacy, "localhost/k8s-deny");
    let p = pod_with_spec(json!({"containers": [{"name": "c"}]}));
    assert!(csc(&p, None).unwrap().apparmor.is_none());
}

#[test]
fn namespaces() {
    let p = pod_with_spec(
        json!({"hostNetwork": true, "hostPID": true, "hostIPC": true, "containers": [{"name": "c"}]}),
    );
    let ns = namespaces_for_pod(&p).unwrap();
    assert_eq!(
        (ns.network, ns.pid, ns.ipc),
        (
            v1::NamespaceMode::Node as i32,
            v1::NamespaceMode::Node as i32,
            v1::NamespaceMode::Node as i32
        )
    );
    let p = pod_with_spec(json!({"shareProcessNamespace": true, "containers": [{"name": "c"}]}));
    assert_eq!(
        namespaces_for_pod(&p).unwrap().pid,
        v1::NamespaceMode::Pod as i32
    );
    let p = pod_with_spec(json!({"hostUsers": false, "containers": [{"name": "c"}]}));
    assert!(namespaces_for_pod(&p).is_err());
}

#[test]
fn sandbox_context() {
    let p = pod_with_spec(json!({
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1001, "fsGroup": 2000,
                            "supplementalGroups": [3000], "supplementalGroupsPolicy": "Strict",
                            "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
        "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
        "containers": [{"name": "c"}],
    }));
    let (sc, sysctls) = sandbox_security_context(&p).unwrap();
    assert!(
        sc.privileged,
        "any privileged container makes the sandbox privileged"
    );
    assert_eq!(sc.run_as_user, Some(v1::Int64Value { value: 1000 }));
    assert_eq!(sc.run_as_group, Some(v1::Int64Value { value: 1001 }));
    assert_eq!(sc.supplemental_groups, vec![2000, 3000]);
    assert_eq!(
        sc.supplemental_groups_policy,
        v1::SupplementalGroupsPolicy::Strict as i32
    );
    assert_eq!(
        sc.seccomp.unwrap().profile_type,
        ProfileType::RuntimeDefault as i32
    );
    assert_eq!(
        sysctls.get("net.core.somaxconn").map(String::as_str),
        Some("1024")
    );
    let p = pod_with_spec(json!({"containers": [{"name": "c"}]}));
    let (sc, sysctls) = sandbox_security_context(&p).unwrap();
    assert!(!sc.privileged);
    assert!(sysctls.is_empty());
    assert!(sc.namespace_options.is_some());
}
