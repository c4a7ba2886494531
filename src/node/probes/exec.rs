//! exec probes and hooks: the command through the CRI's ExecSync, bounded
//! by the probe's timeout; exit code 0 passes.

use std::time::Duration;

use super::results::Outcome;
use crate::cri::api::{RuntimeService, v1};

/// Slack past the ExecSync timeout for the call itself to return.
const CALL_SLACK: Duration = Duration::from_secs(5);

/// Runs `cmd` in the container; a zero `timeout` means no limit on the
/// command (hooks), still bounded by `limit` on our side.
pub async fn run(
    runtime: &dyn RuntimeService,
    container_id: &str,
    cmd: &[String],
    timeout: Duration,
    limit: Duration,
) -> Outcome {
    if cmd.is_empty() {
        return Outcome::Failure("exec action has no command".into());
    }
    let call = runtime.exec_sync(v1::ExecSyncRequest {
        container_id: container_id.to_string(),
        cmd: cmd.to_vec(),
        timeout: timeout.as_secs() as i64,
    });
    let shown = format!("{cmd:?}");
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(r)) if r.exit_code == 0 => Outcome::Success,
        Ok(Ok(r)) => {
            // The kubelet reports the command's combined output.
            let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
            out.push_str(&String::from_utf8_lossy(&r.stderr));
            if out.trim().is_empty() {
                out = format!("command {shown} exited with {}", r.exit_code);
            }
            Outcome::Failure(out)
        }
        Ok(Err(e)) if e.code == tonic::Code::DeadlineExceeded => {
            Outcome::Failure(format!("command {shown} timed out"))
        }
        Ok(Err(e)) => Outcome::Failure(format!("exec {shown}: {}", e.message)),
        Err(_) => Outcome::Failure(format!("command {shown} timed out")),
    }
}

/// A probe's exec: ExecSync with the probe timeout.
pub async fn probe(
    runtime: &dyn RuntimeService,
    container_id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Outcome {
    run(runtime, container_id, cmd, timeout, timeout + CALL_SLACK).await
}
