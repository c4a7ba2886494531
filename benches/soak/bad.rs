//! The bad twins the soak mixes in, and how each is sent.

use std::time::Duration;

use deckhand::cri::v1 as cri;

use super::{Runtime, timed};

/// The bad twins, one per cycle at most.
#[derive(Debug, Clone, Copy)]
pub enum Bad {
    SandboxLogDirEscape,
    SandboxRelativeLogDir,
    DnsServerNewline,
    DnsSearchNewline,
    HostnameTab,
    SandboxNameNul,
    HugeHostname,
    CreateEmptySandboxId,
    CreateShortSandboxId,
    LogPathDotDot,
    LogPathAbsolute,
    EnvNameNul,
    HugeEnvValue,
    DevicePermissions,
    ExecCancelled,
    ExecEmptyId,
    StartUnknownId,
    StopEmptyId,
    RemoveShortId,
}

pub const BADS: [Bad; 19] = [
    Bad::SandboxLogDirEscape,
    Bad::SandboxRelativeLogDir,
    Bad::DnsServerNewline,
    Bad::DnsSearchNewline,
    Bad::HostnameTab,
    Bad::SandboxNameNul,
    Bad::HugeHostname,
    Bad::CreateEmptySandboxId,
    Bad::CreateShortSandboxId,
    Bad::LogPathDotDot,
    Bad::LogPathAbsolute,
    Bad::EnvNameNul,
    Bad::HugeEnvValue,
    Bad::DevicePermissions,
    Bad::ExecCancelled,
    Bad::ExecEmptyId,
    Bad::StartUnknownId,
    Bad::StopEmptyId,
    Bad::RemoveShortId,
];

impl Runtime {
    pub(super) fn bad(&mut self, what: Bad, result: Result<Option<String>, tonic::Status>) {
        match result {
            Err(_) => self.refused_bad += 1,
            Ok(made) => {
                self.accepted_bad.push(format!("{what:?}"));
                if let Some(id) = made {
                    self.ids.insert(id);
                }
            }
        }
    }

    /// A bad sandbox request; whatever it made is removed.
    pub(super) async fn bad_sandbox(&mut self, what: Bad, mut config: cri::PodSandboxConfig) {
        match what {
            Bad::SandboxLogDirEscape => config.log_directory = "../../etc".into(),
            Bad::SandboxRelativeLogDir => config.log_directory = "relative/logs".into(),
            Bad::DnsServerNewline => {
                config.dns_config.as_mut().unwrap().servers =
                    vec!["1.1.1.1\nnameserver 6.6.6.6".into()]
            }
            Bad::DnsSearchNewline => {
                config.dns_config.as_mut().unwrap().searches =
                    vec!["a.example\noptions ndots:99".into()]
            }
            Bad::HostnameTab => config.hostname = "soak\tevil".into(),
            Bad::SandboxNameNul => config.metadata.as_mut().unwrap().name = "bad\0name".into(),
            Bad::HugeHostname => config.hostname = "h".repeat(1 << 20),
            _ => unreachable!(),
        }
        let mut c = self.client.runtime.clone();
        let result = timed(c.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        }))
        .await
        .map(|r| Some(r.pod_sandbox_id));
        if let Ok(Some(id)) = &result {
            let _ = timed(c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }))
            .await;
            let _ = timed(c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }))
            .await;
        }
        self.bad(what, result);
    }

    pub(super) async fn bad_container(
        &mut self,
        what: Bad,
        sandbox: &str,
        config: &cri::PodSandboxConfig,
    ) {
        let mut container = Self::container_config();
        container.metadata.as_mut().unwrap().name = "bad".into();
        let mut sandbox_id = sandbox.to_string();
        match what {
            Bad::CreateEmptySandboxId => sandbox_id.clear(),
            Bad::CreateShortSandboxId => sandbox_id.truncate(1),
            Bad::LogPathDotDot => container.log_path = "../../../../../tmp/soak-dotdot.log".into(),
            Bad::LogPathAbsolute => container.log_path = "/tmp/soak-abs.log".into(),
            Bad::EnvNameNul => {
                container.envs = vec![cri::KeyValue {
                    key: "A\0B".into(),
                    value: b"x".to_vec(),
                }]
            }
            Bad::HugeEnvValue => {
                container.envs = vec![cri::KeyValue {
                    key: "HUGE".into(),
                    value: vec![b'x'; 1 << 20],
                }]
            }
            Bad::DevicePermissions => {
                container.devices = vec![cri::Device {
                    container_path: "/dev/soak".into(),
                    host_path: "/dev/null".into(),
                    permissions: "xyzzy".into(),
                }]
            }
            _ => unreachable!(),
        }
        let mut c = self.client.runtime.clone();
        let result = timed(c.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id,
            config: Some(container),
            sandbox_config: Some(config.clone()),
        }))
        .await
        .map(|r| Some(r.container_id));
        if let Ok(Some(id)) = &result {
            let _ = timed(c.remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            }))
            .await;
        }
        // Whatever an accepted escape wrote, it goes.
        let _ = std::fs::remove_file("/tmp/soak-dotdot.log");
        let _ = std::fs::remove_file("/tmp/soak-abs.log");
        self.bad(what, result);
    }

    pub(super) async fn bad_call(&mut self, what: Bad, container: &str) {
        let mut c = self.client.runtime.clone();
        let result = match what {
            Bad::ExecCancelled => {
                // The client gives up after 1 ms; the exec must not outlive it.
                let call = c.exec_sync(cri::ExecSyncRequest {
                    container_id: container.into(),
                    cmd: vec!["sleep".into(), "30".into()],
                    timeout: 0,
                });
                match tokio::time::timeout(Duration::from_millis(1), call).await {
                    Ok(Ok(_)) => Ok(None),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(tonic::Status::cancelled("client went away")),
                }
            }
            Bad::ExecEmptyId => timed(c.exec_sync(cri::ExecSyncRequest {
                container_id: String::new(),
                cmd: vec!["true".into()],
                timeout: 5,
            }))
            .await
            .map(|_| None),
            Bad::StartUnknownId => timed(c.start_container(cri::StartContainerRequest {
                container_id: "0123456789abcdef0123456789abcdef".into(),
            }))
            .await
            .map(|_| None),
            Bad::StopEmptyId => timed(c.stop_container(cri::StopContainerRequest {
                container_id: String::new(),
                timeout: 0,
            }))
            .await
            .map(|_| None),
            Bad::RemoveShortId => timed(c.remove_container(cri::RemoveContainerRequest {
                container_id: container.chars().take(1).collect(),
            }))
            .await
            .map(|_| None),
            _ => unreachable!(),
        };
        self.bad(what, result);
    }
}
