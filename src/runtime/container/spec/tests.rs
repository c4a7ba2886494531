use super::*;

fn image() -> ExecConfig {
    ExecConfig {
        entrypoint: Some(vec!["/entry".into()]),
        cmd: Some(vec!["default-arg".into()]),
        env: Some(vec!["A=image".into(), "B=image".into()]),
        ..Default::default()
    }
}

fn config() -> cri::ContainerConfig {
    cri::ContainerConfig::default()
}

#[test]
fn command_and_args_merge_like_the_kubelet() {
    let image = image();
    let mut c = config();
    assert_eq!(process_args(&c, &image).unwrap(), ["/entry", "default-arg"]);
    c.args = vec!["x".into()];
    assert_eq!(process_args(&c, &image).unwrap(), ["/entry", "x"]);
    c.command = vec!["/bin/sh".into()];
    c.args = vec![];
    assert_eq!(process_args(&c, &image).unwrap(), ["/bin/sh"]);
    assert!(process_args(&config(), &ExecConfig::default()).is_err());
}

#[test]
fn request_env_overrides_image_env() {
    let mut c = config();
    c.envs = vec![cri::KeyValue {
        key: "B".into(),
        value: "request".into(),
    }];
    let env = process_env(&c, &image(), "pod").unwrap();
    assert!(env.contains(&"A=image".to_string()));
    assert!(env.contains(&"B=request".to_string()));
    assert!(!env.contains(&"B=image".to_string()));
    assert!(env.contains(&"HOSTNAME=pod".to_string()));
}

/// Every capability but SYS_RESOURCE, as on this project's machines.
fn node_caps() -> Vec<Capability> {
    all_known()
        .into_iter()
        .filter(|c| *c != Capability::SysResource)
        .collect()
}

fn all_known() -> Vec<Capability> {
    caps::all()
        .into_iter()
        .filter_map(|c| capability(&c.to_string()).ok())
        .collect()
}

#[test]
fn requested_devices_are_nodes_with_their_cgroup_rules() {
    let devices = crate::runtime::container::devices::resolve(&[cri::Device {
        host_path: "/dev/null".into(),
        container_path: "/dev/mynull".into(),
        permissions: "rw".into(),
    }])
    .unwrap();
    let mut c = config();
    c.linux.get_or_insert_default().resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        ..Default::default()
    });
    let spec = build(&SpecInputs {
        config: &c,
        image: &image(),
        sandbox: &SandboxContext::default(),
        user: &ResolvedUser::default(),
        seccomp_root: Path::new("/seccomp"),
        available_capabilities: &node_caps(),
        host_cgroups: &HostCgroups::ALL,
        mountinfo: MOUNTINFO,
        recursive_read_only: false,
        host_devices: &[],
        devices: &devices,
    })
    .unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    let linux = &json["linux"];
    let node = linux["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "/dev/mynull")
        .expect("the requested node");
    assert_eq!(
        (&node["type"], &node["major"], &node["minor"]),
        (&"c".into(), &1.into(), &3.into())
    );
    let rules = linux["resources"]["devices"].as_array().unwrap();
    // Everything else stays denied: the first rule denies all.
    assert_eq!(rules[0]["allow"], false, "{rules:?}");
    assert_eq!(rules[0]["access"], "rwm", "{rules:?}");
    assert!(
        rules.contains(
            &serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"})
        ),
        "{rules:?}"
    );
    assert_eq!(linux["resources"]["memory"]["limit"], 64 << 20);
}

#[test]
fn namespaces_user_namespace_and_hostname_follow_the_sandbox() {
    let build_with = |sandbox: &SandboxContext| {
        build(&SpecInputs {
            config: &config(),
            image: &image(),
            sandbox,
            user: &ResolvedUser::default(),
            seccomp_root: Path::new("/seccomp"),
            available_capabilities: &node_caps(),
            host_cgroups: &HostCgroups::ALL,
            mountinfo: MOUNTINFO,
            recursive_read_only: false,
            host_devices: &[],
            devices: &[],
        })
        .unwrap()
    };
    // Host network (no UTS namespace of the pod's): the node's hostname.
    let host = build_with(&SandboxContext {
        hostname: "node".into(),
        ..Default::default()
    });
    assert_eq!(host.hostname(), &None);
    let maps = vec![IdMapping {
        container_id: 0,
        host_id: 100_000,
        length: 65_536,
    }];
    let spec = build_with(&SandboxContext {
        uts: Some("/pins/uts".into()),
        hostname: "pod".into(),
        user: Some(UserNamespaceJoin {
            path: "/pins/user".into(),
            uids: maps.clone(),
            gids: maps,
        }),
        rootfs: Some("/run/deckhand/containers/c/rootfs".into()),
        ..Default::default()
    });
    assert_eq!(spec.hostname().as_deref(), Some("pod"));
    let linux = spec.linux().as_ref().unwrap();
    let ns = linux.namespaces().as_ref().unwrap();
    assert_eq!(ns[0].typ(), LinuxNamespaceType::User);
    assert_eq!(ns[0].path().as_deref(), Some(Path::new("/pins/user")));
    let uids = linux.uid_mappings().as_ref().unwrap();
    assert_eq!(
        (uids[0].container_id(), uids[0].host_id(), uids[0].size()),
        (0, 100_000, 65_536)
    );
    assert_eq!(
        spec.root().as_ref().unwrap().path(),
        Path::new("/run/deckhand/containers/c/rootfs")
    );
}

#[test]
fn capabilities_add_drop_and_all() {
    let req = |add: &[&str], drop: &[&str]| cri::Capability {
        add_capabilities: add.iter().map(|s| s.to_string()).collect(),
        drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let node = node_caps();
    let caps = capabilities(false, Some(&req(&["NET_ADMIN"], &["CAP_CHOWN"])), &node).unwrap();
    assert!(caps.contains(&Capability::NetAdmin));
    assert!(!caps.contains(&Capability::Chown));
    let caps = capabilities(false, Some(&req(&["NET_RAW"], &["ALL"])), &node).unwrap();
    assert_eq!(caps, vec![Capability::NetRaw]);
    let caps = capabilities(false, Some(&req(&["ALL"], &[])), &node).unwrap();
    assert!(caps.contains(&Capability::SysAdmin));
    assert!(capabilities(false, Some(&req(&["FLY"], &[])), &node).is_err());
    let privileged = capabilities(true, None, &node).unwrap();
    assert!(privileged.contains(&Capability::SysAdmin));
    // Never more than the node has: runc would fail the start.
    assert!(!privileged.contains(&Capability::SysResource));
    let err = capabilities(false, Some(&req(&["SYS_RESOURCE"], &[])), &node).unwrap_err();
    assert!(err.0.contains("not available"), "{err}");
}

#[test]
fn the_available_set_is_within_our_bounding_set() {
    let available = available_capabilities();
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap();
    assert!(!available.is_empty());
    for cap in &available {
        assert!(
            bounding
                .iter()
                .any(|b| capability(&b.to_string()).ok() == Some(*cap)),
            "{cap} not in the bounding set"
        );
    }
}

const MOUNTINFO: &str = "\
27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 27 0:40 / /shared rw shared:5 - tmpfs tmpfs rw
41 27 0:41 / /slave rw master:5 - tmpfs tmpfs rw
";

fn mount(container: &str, host: &str, propagation: cri::MountPropagation) -> cri::Mount {
    cri::Mount {
        container_path: container.into(),
        host_path: host.into(),
        propagation: propagation as i32,
        ..Default::default()
    }
}

#[test]
fn mounts_must_exist_and_stay_inside() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    let mut request = mount(
        "/data",
        &link.display().to_string(),
        cri::MountPropagation::PropagationPrivate,
    );
    request.readonly = true;
    let m = bind_mount(&request, MOUNTINFO, false).unwrap();
    assert_eq!(
        m.source().as_deref(),
        Some(std::fs::canonicalize(dir.path()).unwrap().as_path())
    );
    assert_eq!(m.options().as_ref().unwrap(), &["rbind", "rprivate", "ro"]);
    let bad = |container: &str, host: &str| {
        bind_mount(
            &mount(container, host, cri::MountPropagation::PropagationPrivate),
            MOUNTINFO,
            false,
        )
        .is_err()
    };
    assert!(bad("/data", "/no/such/path"));
    assert!(bad("relative", "/tmp"));
    assert!(bad("/a/../../etc", "/tmp"));
    assert!(bad("/data", "relative/host"));
}

/// Whether the propagation check passes for a source on a mount of the
/// given mountinfo line's kind. The paths exist on every machine (/, /proc).
fn propagation_ok(info: &str, propagation: cri::MountPropagation) -> Result<Mount, SpecError> {
    bind_mount(&mount("/data", "/proc", propagation), info, false)
}

#[test]
fn propagation_needs_a_fitting_host_mount() {
    use cri::MountPropagation::*;
    let info = |kind: &str| {
        format!("27 1 8:1 / / rw - ext4 sda rw\n22 27 0:21 / /proc rw{kind} - proc proc rw\n")
    };
    let (shared, slave, private) = (info(" shared:1"), info(" master:1"), info(""));
    assert!(propagation_ok(&shared, PropagationBidirectional).is_ok());
    assert!(propagation_ok(&slave, PropagationBidirectional).is_err());
    assert!(propagation_ok(&private, PropagationHostToContainer).is_err());
    let m = propagation_ok(&slave, PropagationHostToContainer).unwrap();
    assert_eq!(m.options().as_ref().unwrap(), &["rbind", "rslave", "rw"]);
    assert!(propagation_ok(&private, PropagationPrivate).is_ok());
    let both = [
        mount("/a", "/proc", PropagationHostToContainer),
        mount("/b", "/proc", PropagationBidirectional),
    ];
    assert_eq!(rootfs_propagation(&both).as_deref(), Some("rshared"));
    assert_eq!(rootfs_propagation(&both[..1]).as_deref(), Some("rslave"));
    assert_eq!(rootfs_propagation(&[]), None);
}

#[test]
fn recursive_read_only_is_read_only_private_and_supported() {
    let rro = |readonly: bool, propagation: cri::MountPropagation, supported: bool| {
        let mut m = mount("/data", "/proc", propagation);
        m.readonly = readonly;
        m.recursive_read_only = true;
        bind_mount(
            &m,
            "22 1 0:21 / /proc rw shared:1 - proc proc rw\n",
            supported,
        )
    };
    use cri::MountPropagation::*;
    let ok = rro(true, PropagationPrivate, true).unwrap();
    assert_eq!(
        ok.options().as_ref().unwrap(),
        &["rbind", "rprivate", "ro", "rro"]
    );
    assert!(rro(false, PropagationPrivate, true).is_err());
    assert!(rro(true, PropagationHostToContainer, true).is_err());
    assert!(rro(true, PropagationBidirectional, true).is_err());
    assert!(rro(true, PropagationPrivate, false).is_err());
}

#[test]
fn limits_the_host_cannot_take_are_dropped() {
    // What the kubelet sends for a burstable pod on a node with 2Mi and
    // 1Gi pages: zero hugepage limits, and swap as large as memory.
    let r = cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        memory_swap_limit_in_bytes: 64 << 20,
        hugepage_limits: vec![
            cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 0,
            },
            cri::HugepageLimit {
                page_size: "1GB".into(),
                limit: 0,
            },
        ],
        ..Default::default()
    };
    let all = resources(&r, &HostCgroups::ALL).unwrap();
    assert_eq!(all.hugepage_limits().as_ref().map(Vec::len), Some(2));
    assert_eq!(all.memory().as_ref().unwrap().swap(), Some(64 << 20));
    let bare = HostCgroups {
        hugetlb: false,
        swap: false,
    };
    let none = resources(&r, &bare).unwrap();
    assert_eq!(none.hugepage_limits(), &None);
    assert_eq!(none.memory().as_ref().unwrap().swap(), None);
    assert_eq!(none.memory().as_ref().unwrap().limit(), Some(64 << 20));
    // Without a swap request, swap is held to the memory limit (as
    // containerd), where the host accounts swap.
    let r = cri::LinuxContainerResources {
        memory_limit_in_bytes: 32 << 20,
        ..Default::default()
    };
    let memory = resources(&r, &HostCgroups::ALL).unwrap().memory().unwrap();
    assert_eq!(memory.swap(), Some(32 << 20));
}

#[test]
fn a_spec_joins_the_sandbox_and_applies_limits() {
    let mut c = config();
    c.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            oom_score_adj: -998,
            ..Default::default()
        }),
        security_context: Some(cri::LinuxContainerSecurityContext {
            readonly_rootfs: true,
            no_new_privs: true,
            seccomp: Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
    });
    let sandbox = SandboxContext {
        network: Some("/run/deckhand/sb/ns/net".into()),
        ipc: Some("/run/deckhand/sb/ns/ipc".into()),
        uts: Some("/run/deckhand/sb/ns/uts".into()),
        cgroups_path: "/kubepods/pod1/ctr1".into(),
        hostname: "pod".into(),
        ..Default::default()
    };
    let user = ResolvedUser::default();
    let spec = build(&SpecInputs {
        config: &c,
        image: &image(),
        sandbox: &sandbox,
        user: &user,
        seccomp_root: Path::new("/var/lib/kubelet/seccomp"),
        available_capabilities: &node_caps(),
        host_cgroups: &HostCgroups::ALL,
        mountinfo: MOUNTINFO,
        recursive_read_only: true,
        host_devices: &[],
        devices: &[],
    })
    .unwrap();
    let linux = spec.linux().as_ref().unwrap();
    let ns = linux.namespaces().as_ref().unwrap();
    let net = ns
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .unwrap();
    assert_eq!(
        net.path().as_deref(),
        Some(Path::new("/run/deckhand/sb/ns/net"))
    );
    assert!(
        ns.iter()
            .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
    );
    let resources = linux.resources().as_ref().unwrap();
    assert_eq!(resources.cpu().as_ref().unwrap().shares(), Some(512));
    assert_eq!(resources.memory().as_ref().unwrap().limit(), Some(64 << 20));
    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.oom_score_adj(), Some(0), "never negative");
    assert_eq!(process.no_new_privileges(), Some(true));
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    assert!(linux.seccomp().is_some());
    assert!(
        linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string())
    );
    // The spec serializes to what runc reads.
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["linux"]["cgroupsPath"], "/kubepods/pod1/ctr1");
    assert_eq!(json["process"]["args"][0], "/entry");
}

#[test]
fn a_privileged_container_gets_devices_and_no_confinement() {
    let mut c = config();
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            privileged: true,
            seccomp: Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Localhost as i32,
                localhost_ref: "/no/such/profile.json".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    // Host UTS: runc would refuse a hostname.
    let sandbox = SandboxContext {
        hostname: "node".into(),
        ..Default::default()
    };
    let null = HostDevice {
        path: "/dev/null".into(),
        block: false,
        major: 1,
        minor: 3,
        mode: 0o666,
        uid: 0,
        gid: 0,
    };
    let spec = build(&SpecInputs {
        config: &c,
        image: &image(),
        sandbox: &sandbox,
        user: &ResolvedUser::default(),
        seccomp_root: Path::new("/nowhere"),
        available_capabilities: &node_caps(),
        host_cgroups: &HostCgroups::ALL,
        mountinfo: MOUNTINFO,
        recursive_read_only: false,
        host_devices: std::slice::from_ref(&null),
        devices: &[],
    })
    .unwrap();
    assert_eq!(spec.hostname(), &None);
    let json = serde_json::to_value(&spec).unwrap();
    let linux = &json["linux"];
    assert!(
        linux.get("seccomp").is_none(),
        "a privileged container is unconfined"
    );
    assert_eq!(linux["maskedPaths"], serde_json::json!([]));
    assert_eq!(linux["devices"][0]["path"], "/dev/null");
    assert_eq!(
        linux["resources"]["devices"],
        serde_json::json!([{"allow": true, "type": "a", "access": "rwm"}])
    );
    let bounding = json["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap();
    assert_eq!(bounding.len(), node_caps().len());
    assert!(!bounding.contains(&serde_json::json!("CAP_SYS_RESOURCE")));
}
