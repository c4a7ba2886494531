use super::*;

fn sandbox() -> SandboxInfo {
    SandboxInfo {
        id: "sb".into(),
        ready: true,
        dir: "/run/deckhand/sandboxes/sb".into(),
        cgroup: Some("/deckhand/sb".into()),
        hostname: "pod".into(),
        log_directory: String::new(),
        namespaces: vec![
            (NsKind::Net, "/pins/net".into()),
            (NsKind::Uts, "/pins/uts".into()),
            (NsKind::Ipc, "/pins/ipc".into()),
            (NsKind::Pid, "/pins/pid".into()),
        ],
        pid_mode: cri::NamespaceMode::Pod as i32,
        userns: None,
    }
}

fn with_pid(mode: cri::NamespaceMode) -> cri::LinuxContainerSecurityContext {
    cri::LinuxContainerSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            pid: mode as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_container_joins_the_pods_namespaces_and_files() {
    let c = sandbox_context(
        &sandbox(),
        &with_pid(cri::NamespaceMode::Pod),
        "/deckhand/sb/c",
        None,
    );
    assert_eq!(
        c.network.as_deref(),
        Some(std::path::Path::new("/pins/net"))
    );
    assert_eq!(c.pid.as_deref(), Some(std::path::Path::new("/pins/pid")));
    assert!(!c.host_pid);
    assert_eq!(c.cgroups_path, "/deckhand/sb/c");
    assert_eq!(
        c.resolv_conf.as_deref(),
        Some(std::path::Path::new(
            "/run/deckhand/sandboxes/sb/resolv.conf"
        ))
    );
}

#[test]
fn the_containers_pid_mode_picks_its_pid_namespace() {
    let own = sandbox_context(
        &sandbox(),
        &with_pid(cri::NamespaceMode::Container),
        "x",
        None,
    );
    assert_eq!((own.pid, own.host_pid), (None, false));
    let host = sandbox_context(&sandbox(), &with_pid(cri::NamespaceMode::Node), "x", None);
    assert_eq!((host.pid, host.host_pid), (None, true));
    let mut host_net = sandbox();
    host_net.namespaces.retain(|(k, _)| *k == NsKind::Pid);
    let c = sandbox_context(&host_net, &with_pid(cri::NamespaceMode::Pod), "x", None);
    assert_eq!((c.network, c.uts, c.ipc), (None, None, None));
}
