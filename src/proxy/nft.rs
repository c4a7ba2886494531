//! Where a rendered batch goes: the `nft` binary reading it on stdin
//! (`nft -f -`: the kernel applies the batch as one transaction), behind a
//! trait so the sync loop is tested with a recorder.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("nft -f -: {0}")]
    Failed(String),
    #[error("nft -f - did not finish within {0:?}")]
    Timeout(Duration),
}

/// Applies one batch atomically.
#[async_trait]
pub trait Ruleset: Send + Sync {
    async fn apply(&self, batch: &str) -> Result<(), NftError>;
}

/// The `nft` binary.
#[derive(Debug, Clone)]
pub struct NftCommand {
    pub program: String,
    pub timeout: Duration,
}

impl Default for NftCommand {
    fn default() -> Self {
        NftCommand {
            program: "nft".into(),
            timeout: Duration::from_secs(30),
        }
    }
}

#[async_trait]
impl Ruleset for NftCommand {
    async fn apply(&self, batch: &str) -> Result<(), NftError> {
        let run = async {
            let mut child = tokio::process::Command::new(&self.program)
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| NftError::Spawn(self.program.clone(), e))?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(batch.as_bytes())
                    .await
                    .map_err(|e| NftError::Spawn(self.program.clone(), e))?;
            }
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| NftError::Spawn(self.program.clone(), e))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(NftError::Failed(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ))
            }
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| NftError::Timeout(self.timeout))?
    }
}
