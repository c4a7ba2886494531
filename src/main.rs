//! deckhand: a Kubernetes node in one binary. See ../shared/DESIGN.md for the map.

use clap::Parser;
use deckhand::cli;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    // The infra process unshares and forks: it must stay single-threaded, so
    // it runs before (and without) the async runtime and logging.
    if let cli::Command::SandboxInfra(infra) = args.command {
        return deckhand::runtime::sandbox::infra::main(infra);
    }
    cli::init_tracing(args.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("deckhand: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("deckhand: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
