//! Whether pods may have user namespaces here: probed once, kept.

use super::*;

impl SandboxManager {
    /// Whether a pod may have a user namespace of its own: the kernel makes
    /// one for the infra process and ID-maps mounts of the filesystem under
    /// the state dir (where containerd's snapshots normally live too). The
    /// answer (or why not) is probed once and kept.
    pub async fn user_namespaces_supported(&self) -> Result<(), String> {
        let exe = self.config.infra_exe.clone();
        let dir = self.config.state_dir.clone();
        self.userns_support
            .get_or_init(|| async move {
                let probed = blocking(move || probe_user_namespaces(&exe, &dir)).await;
                let probed = probed.map_err(|e| e.to_string()).and_then(|r| r);
                if let Err(e) = &probed {
                    tracing::info!(error = %e, "user namespaces not available for pods");
                }
                probed
            })
            .await
            .clone()
    }
}

/// Makes a user namespace as a pod would (an infra process with maps) and
/// ID-maps a mount of `dir` through it. Blocking.
pub(super) fn probe_user_namespaces(exe: &Path, dir: &Path) -> Result<(), String> {
    let args = InfraArgs {
        namespaces: vec![NsKind::User],
        hostname: None,
    };
    // Any range works for the probe; this one is what the kubelet hands
    // out first (65536 ids from 65536).
    let maps = [IdMapping {
        container_id: 0,
        host_id: 65536,
        length: 65536,
    }];
    let infra = infra::spawn(exe, &args, None, Some((&maps, &maps)))
        .map_err(|e| format!("making a user namespace: {e}"))?;
    let result = std::fs::File::open(format!("/proc/{}/ns/user", infra.pid))
        .map_err(|e| format!("opening the user namespace: {e}"))
        .and_then(|userns| {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            idmap::supported(dir, &userns).map_err(|e| e.to_string())
        });
    let pid = nix::unistd::Pid::from_raw(infra.pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    result
}
