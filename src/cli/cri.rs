//! `deckhand cri`: the CRI v1 runtime on a unix socket, backed by containerd.

use clap::Args;

use super::runtime_args::RuntimeArgs;

#[derive(Debug, Args)]
pub struct CriArgs {
    /// Where to serve CRI: `unix:///path` or a path.
    #[arg(long, default_value = "unix:///run/deckhand/cri.sock")]
    pub listen: String,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub async fn run(args: CriArgs) -> anyhow::Result<()> {
    let started = super::runtime_args::start(&args.runtime).await?;
    let socket = crate::cri::socket::socket_path(&args.listen);
    crate::cri::serve(
        &socket,
        started.runtime.clone(),
        started.images.clone(),
        super::shutdown_signal(),
    )
    .await
}
