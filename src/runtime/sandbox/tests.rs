use super::*;
use plan::Plan;

pub(super) fn request(name: &str) -> cri::RunPodSandboxRequest {
    cri::RunPodSandboxRequest {
        config: Some(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: "uid-1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/pod1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    }
}

fn with_linux(
    mut r: cri::RunPodSandboxRequest,
    f: impl FnOnce(&mut cri::LinuxPodSandboxConfig),
) -> cri::RunPodSandboxRequest {
    f(r.config.as_mut().unwrap().linux.as_mut().unwrap());
    r
}

fn ns_options(
    network: cri::NamespaceMode,
    pid: cri::NamespaceMode,
    ipc: cri::NamespaceMode,
) -> Option<cri::LinuxSandboxSecurityContext> {
    Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            network: network as i32,
            pid: pid as i32,
            ipc: ipc as i32,
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn invalid(r: cri::RunPodSandboxRequest) -> bool {
    matches!(Plan::from_request(r), Err(SandboxError::InvalidArgument(_)))
}

#[test]
fn metadata_is_required() {
    assert!(invalid(cri::RunPodSandboxRequest::default()));
    for field in 0..3 {
        let mut r = request("p");
        let m = r.config.as_mut().unwrap().metadata.as_mut().unwrap();
        match field {
            0 => m.name.clear(),
            1 => m.namespace.clear(),
            _ => m.uid.clear(),
        }
        assert!(invalid(r), "field {field}");
    }
    let mut r = request("p");
    r.config.as_mut().unwrap().metadata = None;
    assert!(invalid(r));
}

#[test]
fn cgroup_parent_must_be_absolute_and_contained() {
    assert!(invalid(
        with_linux(request("p"), |l| l.cgroup_parent = "kubepods".into())
    ));
    assert!(invalid(with_linux(request("p"), |l| l.cgroup_parent =
        "/kubepods/../../x".into())));
    let plan = Plan::from_request(request("p")).unwrap();
    assert_eq!(plan.cgroup_parent, "kubepods/pod1");
    let plan = Plan::from_request(with_linux(request("p"), |l| l.cgroup_parent.clear())).unwrap();
    assert_eq!(plan.cgroup_parent, "deckhand");
    let rec = plan.record("abc".into(), Path::new("/run/d"), None);
    assert_eq!(rec.cgroup.as_deref(), Some("deckhand/abc"));
    assert_eq!(
        rec.ns_path(NsKind::Net),
        PathBuf::from("/run/d/sandboxes/abc/ns/net")
    );
}

#[test]
fn namespaces_follow_the_options() {
    use cri::NamespaceMode::{Container, Node, Pod};
    let plan = Plan::from_request(request("p")).unwrap();
    // The proto's zero value is POD for all three (the kubelet asks for
    // CONTAINER PID explicitly).
    assert_eq!(
        plan.namespaces(),
        vec![NsKind::Net, NsKind::Uts, NsKind::Ipc, NsKind::Pid]
    );
    let plan = Plan::from_request(with_linux(request("p"), |l| {
        l.security_context = ns_options(Pod, Container, Pod)
    }))
    .unwrap();
    assert_eq!(
        plan.namespaces(),
        vec![NsKind::Net, NsKind::Uts, NsKind::Ipc]
    );
    // No hostname in the request: the node's, as containerd does.
    let node = nix::unistd::gethostname().unwrap();
    assert_eq!(plan.hostname, node.to_str().unwrap());
    let plan = Plan::from_request(with_linux(request("p"), |l| {
        l.security_context = ns_options(Pod, Pod, Pod)
    }))
    .unwrap();
    assert_eq!(
        plan.namespaces(),
        vec![NsKind::Net, NsKind::Uts, NsKind::Ipc, NsKind::Pid]
    );
    let plan = Plan::from_request(with_linux(request("p"), |l| {
        l.security_context = ns_options(Node, Node, Node)
    }))
    .unwrap();
    assert!(plan.namespaces().is_empty());
    let plan = Plan::from_request(with_linux(request("p"), |l| {
        l.security_context = ns_options(Node, Container, Pod)
    }))
    .unwrap();
    assert_eq!(plan.namespaces(), vec![NsKind::Ipc]);
    assert!(invalid(with_linux(request("p"), |l| l.security_context =
        ns_options(Container, Pod, Pod))));
}

#[test]
fn sysctls_must_stay_inside_the_pod() {
    use cri::NamespaceMode::{Node, Pod};
    let set = |name: &str| {
        let name = name.to_string();
        move |l: &mut cri::LinuxPodSandboxConfig| {
            l.sysctls.insert(name, "1".into());
        }
    };
    assert!(Plan::from_request(with_linux(request("p"), set("net.ipv4.ip_forward"))).is_ok());
    assert!(invalid(with_linux(request("p"), set("kernel.panic"))));
    assert!(invalid(with_linux(request("p"), set("net/../../x"))));
    assert!(invalid(with_linux(request("p"), |l| {
        l.security_context = ns_options(Node, Pod, Pod);
        l.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
    })));
}

#[test]
fn port_mappings_become_the_capability() {
    let mut r = request("p");
    r.config.as_mut().unwrap().port_mappings = vec![
        cri::PortMapping {
            protocol: cri::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        },
        cri::PortMapping {
            container_port: 80,
            ..Default::default()
        },
    ];
    let plan = Plan::from_request(r).unwrap();
    assert_eq!(
        plan.port_mappings,
        vec![PortMapping {
            host_port: 5353,
            container_port: 53,
            protocol: "udp".into(),
            host_ip: "127.0.0.1".into()
        }]
    );
}

#[test]
fn filters_by_id_state_and_labels() {
    let plan = Plan::from_request(request("p")).unwrap();
    let mut rec = plan.record("abcdef".into(), Path::new("/run/d"), None);
    rec.labels.insert("app".into(), "web".into());
    rec.state = SandboxState::Ready;
    let f = |id: &str, state: Option<cri::PodSandboxState>, labels: &[(&str, &str)]| {
        cri::PodSandboxFilter {
            id: id.into(),
            state: state.map(|s| cri::PodSandboxStateValue { state: s as i32 }),
            label_selector: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    };
    assert!(matches_filter(&rec, None));
    assert!(matches_filter(&rec, Some(&f("abc", None, &[]))));
    assert!(!matches_filter(&rec, Some(&f("x", None, &[]))));
    assert!(matches_filter(
        &rec,
        Some(&f(
            "",
            Some(cri::PodSandboxState::SandboxReady),
            &[("app", "web")]
        ))
    ));
    assert!(!matches_filter(
        &rec,
        Some(&f("", Some(cri::PodSandboxState::SandboxNotready), &[]))
    ));
    assert!(!matches_filter(&rec, Some(&f("", None, &[("app", "db")]))));
    rec.state = SandboxState::Creating;
    assert!(matches_filter(
        &rec,
        Some(&f("", Some(cri::PodSandboxState::SandboxNotready), &[]))
    ));
}

#[test]
fn ids_are_unique_hex() {
    let a = new_id();
    assert_eq!(a.len(), 64);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, new_id());
}

fn with_userns(
    mode: cri::NamespaceMode,
    uids: &[(u32, u32, u32)],
    gids: &[(u32, u32, u32)],
) -> cri::RunPodSandboxRequest {
    let maps = |m: &[(u32, u32, u32)]| {
        m.iter()
            .map(|&(container_id, host_id, length)| cri::IdMapping {
                container_id,
                host_id,
                length,
            })
            .collect()
    };
    with_linux(request("p"), |l| {
        l.security_context = Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                userns_options: Some(cri::UserNamespace {
                    mode: mode as i32,
                    uids: maps(uids),
                    gids: maps(gids),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    })
}

#[test]
fn a_pod_user_namespace_owns_the_others() {
    use cri::NamespaceMode::{Container, Node, Pod, Target};
    let one = [(0, 100_000, 65_536)];
    let plan = Plan::from_request(with_userns(Pod, &one, &one)).unwrap();
    assert_eq!(
        plan.namespaces(),
        vec![
            NsKind::User,
            NsKind::Net,
            NsKind::Uts,
            NsKind::Ipc,
            NsKind::Pid
        ]
    );
    let userns = plan.userns.clone().unwrap();
    assert_eq!(userns.root(), (100_000, 100_000));
    let rec = plan.record("abc".into(), Path::new("/run/d"), None);
    assert_eq!(rec.userns, Some(userns));

    // NODE is the host's user namespace.
    let plan = Plan::from_request(with_userns(Node, &[], &[])).unwrap();
    assert!(plan.userns.is_none());
    assert!(!plan.namespaces().contains(&NsKind::User));

    // What critest and the kubelet expect refused.
    let two = [(0, 1000, 100_000), (0, 2000, 100_000)];
    assert!(invalid(with_userns(Pod, &two, &two)), "two ranges");
    let no_root = [(1, 1000, 100_000)];
    assert!(invalid(with_userns(Pod, &no_root, &no_root)), "0 unmapped");
    assert!(invalid(with_userns(Pod, &[], &[])), "no mappings");
    assert!(invalid(with_userns(Pod, &one, &[])), "no gid mapping");
    assert!(
        invalid(with_userns(Pod, &[(0, u32::MAX, 2)], &one)),
        "overflow"
    );
    assert!(invalid(with_userns(Pod, &[(0, 1000, 0)], &one)), "empty");
    assert!(invalid(with_userns(Container, &[], &[])));
    assert!(invalid(with_userns(Target, &[], &[])));
    assert!(invalid(with_userns(Node, &one, &one)), "NODE with maps");
    // The host's namespaces are out of reach from inside a user namespace.
    let mut host_net = with_userns(Pod, &one, &one);
    let options = host_net.config.as_mut().unwrap().linux.as_mut().unwrap();
    let ns = options.security_context.as_mut().unwrap();
    ns.namespace_options.as_mut().unwrap().network = Node as i32;
    assert!(invalid(host_net));
}

fn with_config(
    mut r: cri::RunPodSandboxRequest,
    f: impl FnOnce(&mut cri::PodSandboxConfig),
) -> cri::RunPodSandboxRequest {
    f(r.config.as_mut().unwrap());
    r
}

#[test]
fn names_cannot_carry_separators_or_control_characters() {
    for bad in ["a/b", "a\0b", "a\nb"] {
        assert!(invalid(request(bad)), "{bad:?}");
    }
    // Pods a_b/c and a/b_c with one uid reserve different names.
    let key = |name: &str, ns: &str| record::reserved_name(name, ns, "u", 0);
    assert_ne!(key("a_b", "c"), key("a", "b_c"));
}

#[test]
fn a_log_directory_is_absolute_and_does_not_climb() {
    for bad in ["../../etc", "relative/logs", "/var/log/pods/../../../etc"] {
        let r = with_config(request("p"), |c| c.log_directory = bad.into());
        assert!(invalid(r), "{bad:?}");
    }
    let r = with_config(request("p"), |c| {
        c.log_directory = "/var/log/pods/default_p_uid-1/".into()
    });
    assert_eq!(
        Plan::from_request(r).unwrap().log_directory,
        "/var/log/pods/default_p_uid-1"
    );
}

#[test]
fn dns_fields_cannot_add_lines_to_resolv_conf() {
    let dns = |servers: &[&str], searches: &[&str], options: &[&str]| {
        with_config(request("p"), |c| {
            c.dns_config = Some(cri::DnsConfig {
                servers: servers.iter().map(|s| s.to_string()).collect(),
                searches: searches.iter().map(|s| s.to_string()).collect(),
                options: options.iter().map(|s| s.to_string()).collect(),
            })
        })
    };
    assert!(invalid(dns(&["1.1.1.1\nnameserver 6.6.6.6"], &[], &[])));
    assert!(invalid(dns(&["not-an-ip"], &[], &[])));
    assert!(invalid(dns(&[], &["a.example\noptions ndots:99"], &[])));
    assert!(invalid(dns(&[], &[], &["ndots:1 attempts:9"])));
    let ok = dns(
        &["10.96.0.10", "fd00::a"],
        &["svc.cluster.local"],
        &["ndots:5"],
    );
    let plan = Plan::from_request(ok).unwrap();
    assert_eq!(
        files::resolv_conf(plan.dns.as_ref()).unwrap(),
        "search svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5\n"
    );
}

#[test]
fn port_mapping_host_ips_and_runtime_handlers_are_checked() {
    let r = with_config(request("p"), |c| {
        c.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: 8080,
            host_ip: "not-an-ip".into(),
        }]
    });
    assert!(invalid(r));
    let mut r = request("p");
    r.runtime_handler = "kata".into();
    assert!(matches!(
        Plan::from_request(r),
        Err(SandboxError::HandlerNotFound(h)) if h == "kata"
    ));
    let mut r = request("p");
    r.runtime_handler = "runc".into();
    assert!(Plan::from_request(r).is_ok());
}

#[test]
fn sysctl_values_have_no_control_characters() {
    let r = with_linux(request("p"), |l| {
        l.sysctls
            .insert("net.ipv4.ip_forward".into(), "1\nkernel.x=1".into());
    });
    assert!(invalid(r));
}
