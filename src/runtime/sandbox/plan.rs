//! RunPodSandbox's request, checked and turned into a plan before anything
//! is made: every refusal is InvalidArgument (or NotFound for an unknown
//! runtime handler) and leaves nothing behind.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cri::api::v1 as cri;
use crate::runtime::validate;
use crate::sys::cni::{NetworkList, PortMapping};
use crate::sys::idmap::IdMapping;
use crate::sys::ns::NsKind;
use crate::sys::{cgroup, sysctl};

use super::record::{Network, SandboxRecord, SandboxState};
use super::{DEFAULT_CGROUP_PARENT, SandboxError, UserNamespace, files, now_ns};

/// A validated RunPodSandbox request.
#[derive(Debug)]
pub(super) struct Plan {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub hostname: String,
    pub log_directory: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub runtime_handler: String,
    pub dns: Option<cri::DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub cgroup_parent: String,
    pub network_mode: i32,
    pub pid_mode: i32,
    pub ipc_mode: i32,
    pub userns: Option<UserNamespace>,
    pub sysctls: Vec<(String, String)>,
}

impl Plan {
    pub fn from_request(request: cri::RunPodSandboxRequest) -> Result<Plan, SandboxError> {
        let invalid = |m: &str| SandboxError::InvalidArgument(m.to_string());
        let config = request
            .config
            .ok_or_else(|| invalid("sandbox config is required"))?;
        let meta = config
            .metadata
            .ok_or_else(|| invalid("sandbox metadata is required"))?;
        for (field, value) in [
            ("name", &meta.name),
            ("namespace", &meta.namespace),
            ("uid", &meta.uid),
        ] {
            if value.is_empty() {
                return Err(SandboxError::InvalidArgument(format!(
                    "sandbox metadata.{field} is required"
                )));
            }
        }
        for (field, value) in [
            ("metadata.name", &meta.name),
            ("metadata.namespace", &meta.namespace),
            ("metadata.uid", &meta.uid),
        ] {
            validate::plain_name(field, value).map_err(field_error)?;
        }
        // Logs go under this directory: it must not depend on our working
        // directory or climb out of where it says it is.
        let log_directory = if config.log_directory.is_empty() {
            String::new()
        } else {
            validate::absolute_path("log_directory", &config.log_directory)
                .map_err(field_error)?
                .display()
                .to_string()
        };
        if let Some(dns) = &config.dns_config {
            check_dns(dns)?;
        }
        // One handler, the default: "" or containerd's name for it.
        if !request.runtime_handler.is_empty() && request.runtime_handler != "runc" {
            return Err(SandboxError::HandlerNotFound(request.runtime_handler));
        }
        let linux = config.linux.unwrap_or_default();
        let ns = linux
            .security_context
            .as_ref()
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        let mode = |what: &str, m: i32, allowed: &[cri::NamespaceMode]| {
            if allowed.iter().any(|a| *a as i32 == m) {
                Ok(m)
            } else {
                Err(SandboxError::InvalidArgument(format!(
                    "unsupported {what} namespace mode {m} for a sandbox"
                )))
            }
        };
        use cri::NamespaceMode::{Container, Node, Pod};
        let network_mode = mode("network", ns.network, &[Pod, Node])?;
        let pid_mode = mode("pid", ns.pid, &[Pod, Container, Node])?;
        let ipc_mode = mode("ipc", ns.ipc, &[Pod, Node])?;
        let userns = user_namespace(ns.userns_options.as_ref())?;
        if userns.is_some() && [network_mode, pid_mode, ipc_mode].contains(&(Node as i32)) {
            // Root in the pod's user namespace has no power over the host's
            // namespaces: runc could not even join them.
            return Err(invalid(
                "a pod with its own user namespace cannot share the host's network, PID or IPC namespace",
            ));
        }
        let cgroup_parent = if linux.cgroup_parent.is_empty() {
            DEFAULT_CGROUP_PARENT.to_string()
        } else {
            linux.cgroup_parent.clone()
        };
        let cgroup_parent = cgroup::validate_parent(&cgroup_parent)
            .map_err(|e| SandboxError::InvalidArgument(e.to_string()))?;
        // No hostname in the request means the node's, as containerd does
        // (the kubelet always sends one; critest often does not).
        let hostname = if !config.hostname.is_empty() {
            config.hostname.clone()
        } else {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        };
        if network_mode != Node as i32 && !files::valid_hostname(&hostname) {
            return Err(SandboxError::InvalidArgument(format!(
                "invalid hostname {hostname:?}"
            )));
        }
        let mut port_mappings = Vec::new();
        for p in &config.port_mappings {
            if p.host_port <= 0 {
                continue; // no host port: nothing to map (as the kubelet means it)
            }
            if !(1..=65535).contains(&p.container_port) || p.host_port > 65535 {
                return Err(invalid("port mapping out of range"));
            }
            let protocol = match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Tcp) => "tcp",
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                Err(_) => return Err(invalid("unknown port mapping protocol")),
            };
            if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::IpAddr>().is_err() {
                return Err(SandboxError::InvalidArgument(format!(
                    "port mapping host_ip {:?} is not an IP address",
                    p.host_ip
                )));
            }
            port_mappings.push(PortMapping {
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: protocol.into(),
                host_ip: p.host_ip.clone(),
            });
        }
        let mut sysctls: Vec<(String, String)> = linux.sysctls.into_iter().collect();
        sysctls.sort();
        for (name, value) in &sysctls {
            if value.chars().any(char::is_control) {
                return Err(SandboxError::InvalidArgument(format!(
                    "sysctl {name:?} value {value:?} contains control characters"
                )));
            }
            let kind = sysctl::namespace_of(name).ok_or_else(|| {
                SandboxError::InvalidArgument(format!("sysctl {name:?} is not namespaced"))
            })?;
            let shared = match kind {
                NsKind::Net | NsKind::Uts => network_mode == Node as i32,
                NsKind::Ipc => ipc_mode == Node as i32,
                NsKind::Pid | NsKind::User => true,
            };
            if shared {
                return Err(SandboxError::InvalidArgument(format!(
                    "sysctl {name:?} would change the node: the pod shares that namespace with the host"
                )));
            }
            sysctl::proc_path(name).map_err(|e| SandboxError::InvalidArgument(e.to_string()))?;
        }
        Ok(Plan {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            attempt: meta.attempt,
            hostname,
            log_directory,
            labels: config.labels.into_iter().collect(),
            annotations: config.annotations.into_iter().collect(),
            runtime_handler: request.runtime_handler,
            dns: config.dns_config,
            port_mappings,
            cgroup_parent,
            network_mode,
            pid_mode,
            ipc_mode,
            userns,
            sysctls,
        })
    }

    /// The sandbox's namespaces: the UTS namespace goes with the network one
    /// (a host-network pod has the node's hostname, as in the kubelet).
    pub fn namespaces(&self) -> Vec<NsKind> {
        let node = cri::NamespaceMode::Node as i32;
        let mut kinds = Vec::new();
        if self.userns.is_some() {
            kinds.push(NsKind::User);
        }
        if self.network_mode != node {
            kinds.push(NsKind::Net);
            kinds.push(NsKind::Uts);
        }
        if self.ipc_mode != node {
            kinds.push(NsKind::Ipc);
        }
        if self.pid_mode == cri::NamespaceMode::Pod as i32 {
            kinds.push(NsKind::Pid);
        }
        kinds
    }

    pub fn record(
        &self,
        id: String,
        run_dir: &Path,
        network: Option<NetworkList>,
    ) -> SandboxRecord {
        SandboxRecord {
            dir: run_dir.join("sandboxes").join(&id),
            cgroup: Some(cgroup::child_path(&self.cgroup_parent, &id)),
            id,
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            uid: self.uid.clone(),
            attempt: self.attempt,
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            runtime_handler: self.runtime_handler.clone(),
            hostname: self.hostname.clone(),
            log_directory: self.log_directory.clone(),
            network_mode: self.network_mode,
            pid_mode: self.pid_mode,
            ipc_mode: self.ipc_mode,
            created_at: now_ns(),
            state: SandboxState::Creating,
            namespaces: self.namespaces(),
            infra: None,
            network: network.map(|list| Network {
                list,
                loopback: false,
                port_mappings: self.port_mappings.clone(),
                result: None,
                attached: false,
            }),
            ips: vec![],
            userns: self.userns.clone(),
        }
    }
}

fn field_error(e: validate::FieldError) -> SandboxError {
    SandboxError::InvalidArgument(e.to_string())
}

/// resolv.conf is written from these: each server an IP address, each
/// search domain and option one word, so none can add a line of its own.
fn check_dns(dns: &cri::DnsConfig) -> Result<(), SandboxError> {
    for server in &dns.servers {
        if server.parse::<std::net::IpAddr>().is_err() {
            return Err(SandboxError::InvalidArgument(format!(
                "dns server {server:?} is not an IP address"
            )));
        }
    }
    for search in &dns.searches {
        validate::config_word("dns search", search).map_err(field_error)?;
    }
    for option in &dns.options {
        validate::config_word("dns option", option).map_err(field_error)?;
    }
    Ok(())
}

/// NamespaceOption.userns_options as the pod's user namespace: NODE (or
/// nothing) means the host's; POD takes exactly one uid and one gid range,
/// each mapping the pod's root (container id 0), as the kubelet sends them.
fn user_namespace(
    options: Option<&cri::UserNamespace>,
) -> Result<Option<UserNamespace>, SandboxError> {
    let Some(options) = options else {
        return Ok(None);
    };
    let invalid = |m: String| Err(SandboxError::InvalidArgument(m));
    match cri::NamespaceMode::try_from(options.mode) {
        Ok(cri::NamespaceMode::Node) => {
            if !options.uids.is_empty() || !options.gids.is_empty() {
                return invalid("user namespace mode NODE takes no ID mappings".into());
            }
            Ok(None)
        }
        Ok(cri::NamespaceMode::Pod) => {
            let range = |what: &str, maps: &[cri::IdMapping]| {
                let [m] = maps else {
                    return Err(SandboxError::InvalidArgument(format!(
                        "a pod user namespace takes exactly one {what} mapping, got {}",
                        maps.len()
                    )));
                };
                let m = IdMapping {
                    container_id: m.container_id,
                    host_id: m.host_id,
                    length: m.length,
                };
                if !m.is_valid() {
                    return Err(SandboxError::InvalidArgument(format!(
                        "{what} mapping {m:?} is empty or beyond 32 bits"
                    )));
                }
                if m.host_of(0).is_none() {
                    return Err(SandboxError::InvalidArgument(format!(
                        "{what} mapping {m:?} does not map container id 0 (the pod's root)"
                    )));
                }
                Ok(vec![m])
            };
            Ok(Some(UserNamespace {
                uids: range("uid", &options.uids)?,
                gids: range("gid", &options.gids)?,
            }))
        }
        Ok(mode) => invalid(format!(
            "user namespace mode {} is not supported (only POD and NODE)",
            mode.as_str_name()
        )),
        Err(_) => invalid(format!("unknown user namespace mode {}", options.mode)),
    }
}
