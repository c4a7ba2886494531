//! The PodSandboxConfig (kuberuntime_sandbox.go generatePodSandboxConfig,
//! kubelet_pods.go GeneratePodHostNameAndDomain).

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{NodeContext, PodSpecError, dns, labels, resources, security};
use crate::cri::v1;

/// validation.DNS1123LabelMaxLength, and the kernel's nodename field
const HOSTNAME_MAX_LEN: usize = 63;
const FQDN_MAX_LEN: usize = 64;

pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    node: &NodeContext,
) -> Result<v1::PodSandboxConfig, PodSpecError> {
    let m = &pod.metadata;
    let name = m.name.clone().unwrap_or_default();
    let namespace = m.namespace.clone().unwrap_or_default();
    let uid = m.uid.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);

    let mut config = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt,
        }),
        labels: labels::sandbox_labels(pod),
        annotations: labels::sandbox_annotations(pod),
        dns_config: Some(dns::pod_dns_config(pod, node)?),
        log_directory: pod_log_directory(pod, node),
        ..Default::default()
    };
    if !host_network {
        let (hostname, domain) = hostname_and_domain(pod, node)?;
        let fqdn = spec.and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false);
        config.hostname = kernel_hostname(hostname, &domain, fqdn)?;
    }
    for c in spec.map(|s| &s.containers).into_iter().flatten() {
        config.port_mappings.extend(port_mappings(c));
    }
    let (security_context, sysctls) = security::sandbox_security_context(pod)?;
    let (sandbox_resources, overhead) = resources::sandbox_resources(pod);
    config.linux = Some(v1::LinuxPodSandboxConfig {
        cgroup_parent: resources::pod_cgroup_parent(pod, node),
        security_context: Some(security_context),
        sysctls,
        overhead: Some(overhead),
        resources: Some(sandbox_resources),
    });
    Ok(config)
}

/// BuildPodLogsDirectory: <pod logs dir>/<namespace>_<name>_<uid>
pub fn pod_log_directory(pod: &Pod, node: &NodeContext) -> String {
    let m = &pod.metadata;
    node.pod_logs_dir
        .join(format!(
            "{}_{}_{}",
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
            m.uid.as_deref().unwrap_or_default()
        ))
        .to_string_lossy()
        .into_owned()
}

/// BuildContainerLogsDirectory: the pod's log directory / container name
/// (the kubelet creates it before CreateContainer).
pub fn container_log_directory(pod: &Pod, container_name: &str, node: &NodeContext) -> String {
    std::path::Path::new(&pod_log_directory(pod, node))
        .join(container_name)
        .to_string_lossy()
        .into_owned()
}

/// utilvalidation.IsDNS1123Label, in the validator's words.
fn dns1123_label_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > HOSTNAME_MAX_LEN {
        errs.push(format!(
            "must be no more than {HOSTNAME_MAX_LEN} characters"
        ));
    }
    let b = value.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let valid = !b.is_empty() && b.iter().all(ok_char) && b[0] != b'-' && b[b.len() - 1] != b'-';
    if !valid {
        errs.push(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into(),
        );
    }
    errs
}

/// GeneratePodHostNameAndDomain: spec.hostname or the pod name (cut to 63
/// characters), and `<subdomain>.<ns>.svc.<cluster domain>` with a subdomain.
pub fn hostname_and_domain(
    pod: &Pod,
    node: &NodeContext,
) -> Result<(String, String), PodSpecError> {
    let spec = pod.spec.as_ref();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let mut hostname = pod_name.clone();
    if let Some(h) = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
    {
        let errs = dns1123_label_errors(h);
        if !errs.is_empty() {
            return Err(PodSpecError::sandbox(format!(
                "pod Hostname {h:?} is not a valid DNS label: {}",
                errs.join(";")
            )));
        }
        hostname = h.to_string();
    }
    if hostname.len() > HOSTNAME_MAX_LEN {
        let cut = hostname[..HOSTNAME_MAX_LEN]
            .trim_end_matches(['-', '.'])
            .to_string();
        if cut.is_empty() {
            return Err(PodSpecError::sandbox(format!(
                "hostname for pod {pod_name:?} was invalid: {hostname:?}"
            )));
        }
        hostname = cut;
    }
    let mut domain = String::new();
    if let Some(sub) = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        let errs = dns1123_label_errors(sub);
        if !errs.is_empty() {
            return Err(PodSpecError::sandbox(format!(
                "pod Subdomain {sub:?} is not a valid DNS label: {}",
                errs.join(";")
            )));
        }
        domain = format!(
            "{sub}.{}.svc.{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            node.cluster_domain
        );
    }
    Ok((hostname, domain))
}

/// util.GetNodenameForKernel: the FQDN with setHostnameAsFQDN, which must
/// fit the kernel's 64-byte nodename.
fn kernel_hostname(hostname: String, domain: &str, as_fqdn: bool) -> Result<String, PodSpecError> {
    if domain.is_empty() || !as_fqdn {
        return Ok(hostname);
    }
    let fqdn = format!("{hostname}.{domain}");
    if fqdn.len() > FQDN_MAX_LEN {
        return Err(PodSpecError::sandbox(format!(
            "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long ({FQDN_MAX_LEN} characters is the max, {} characters requested)",
            fqdn.len()
        )));
    }
    Ok(fqdn)
}

/// kubecontainer.MakePortMappings: every declared port (hostPort 0 too),
/// a name (explicit or derived from family/protocol/ip/ports) used once.
fn port_mappings(container: &Container) -> Vec<v1::PortMapping> {
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::new();
    for p in container.ports.iter().flatten() {
        let host_ip = p.host_ip.clone().unwrap_or_default();
        let protocol = p.protocol.clone().unwrap_or_default();
        let family = if host_ip.is_empty() {
            "any"
        } else if host_ip.contains(':') {
            "v6"
        } else {
            "v4"
        };
        let name = match p.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => format!(
                "{family}-{protocol}-{host_ip}:{}:{}",
                p.container_port,
                p.host_port.unwrap_or(0)
            ),
        };
        if !names.insert(name) {
            tracing::info!(container = %container.name, "Port name conflicted, it is defined more than once");
            continue;
        }
        out.push(v1::PortMapping {
            protocol: runtime_protocol(&protocol) as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip,
        });
    }
    out
}

/// toRuntimeProtocol: TCP for anything unknown.
fn runtime_protocol(protocol: &str) -> v1::Protocol {
    match protocol {
        "UDP" => v1::Protocol::Udp,
        "SCTP" => v1::Protocol::Sctp,
        _ => v1::Protocol::Tcp,
    }
}

#[cfg(test)]
#[path = "sandbox_tests.rs"]
mod tests;
