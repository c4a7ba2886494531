//! What the node's container stack can do, probed once when deckhand
//! starts: the capabilities it can grant, and whether runc and the kernel
//! make recursive read-only mounts (advertised in the CRI Status).

use std::time::Duration;

use oci_spec::runtime::Capability;

use super::spec;

/// The OCI runtime the runc v2 shim runs (from PATH, as the shim finds it).
const RUNC: &str = "runc";
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Capabilities a container may be given ("ALL" and privileged mean these).
    pub capabilities: Vec<Capability>,
    /// `rro` mounts work: runc knows the option and the kernel has mount_setattr.
    pub recursive_read_only: bool,
}

pub async fn probe() -> Features {
    let recursive_read_only =
        crate::sys::mount::has_mount_setattr() && runc_mount_option("rro").await;
    let features = Features {
        capabilities: spec::available_capabilities(),
        recursive_read_only,
    };
    tracing::info!(
        capabilities = features.capabilities.len(),
        recursive_read_only,
        "container features"
    );
    features
}

/// Whether `runc features` lists a mount option (runc 1.1 and later answer
/// it; an older runc or none at all means no).
async fn runc_mount_option(option: &str) -> bool {
    let output = tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::process::Command::new(RUNC)
            .arg("features")
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let stdout = match output {
        Ok(Ok(o)) if o.status.success() => o.stdout,
        Ok(Ok(o)) => {
            tracing::info!(status = %o.status, "`runc features` failed");
            return false;
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "running `runc features`");
            return false;
        }
        Err(_) => {
            tracing::warn!("`runc features` did not answer");
            return false;
        }
    };
    lists_mount_option(&stdout, option)
}

fn lists_mount_option(features_json: &[u8], option: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(features_json)
        .ok()
        .and_then(|v| {
            v.get("mountOptions")?
                .as_array()
                .map(|options| options.iter().any(|o| o.as_str() == Some(option)))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_are_read_from_runc_features() {
        let json = br#"{"ociVersionMin":"1.0.0","mountOptions":["ro","rro","rw"]}"#;
        assert!(lists_mount_option(json, "rro"));
        assert!(!lists_mount_option(json, "rnosymfollow"));
        assert!(!lists_mount_option(b"not json", "rro"));
        assert!(!lists_mount_option(b"{}", "rro"));
    }
}
