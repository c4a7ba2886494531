//! `deckhand cri-reset`: stop and remove every pod sandbox (with its
//! containers) a CRI runtime holds, like `crictl rmp -a -f`. For operators
//! draining a node by hand, and for the conformance runner, whose failing
//! specs leave pods behind.

use std::path::PathBuf;

use crate::cri::v1 as cri;
use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct CriResetArgs {
    /// The CRI socket: `unix:///path` or a path.
    #[arg(long, default_value = "unix:///run/deckhand/cri.sock")]
    pub endpoint: String,
}

pub async fn run(args: CriResetArgs) -> anyhow::Result<()> {
    let socket: PathBuf = crate::cri::socket::socket_path(&args.endpoint);
    let mut client = crate::cri::client::connect(&socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let pods = client
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .context("listing pod sandboxes")?
        .into_inner()
        .items;
    let mut failed = 0;
    for pod in &pods {
        let stop = client
            .runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await;
        let remove = client
            .runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await;
        if let Err(status) = stop.and(remove) {
            failed += 1;
            eprintln!("pod {}: {}", pod.id, status.message());
        }
    }
    println!(
        "removed {} of {} pod sandboxes",
        pods.len() - failed,
        pods.len()
    );
    anyhow::ensure!(failed == 0, "{failed} pod sandboxes could not be removed");
    Ok(())
}
