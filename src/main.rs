//! deckhand: a Kubernetes node in one binary. See ../shared/DESIGN.md for the map.

use clap::Parser;
use deckhand::cli;

fn main() -> std::process::ExitCode {
    // Run as containerd's binary log driver (through a link of that name),
    // the shim passes flags only, in no fixed order: no subcommand possible.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name()
        == Some(std::ffi::OsStr::new(cli::log_driver::ARGV0))
    {
        return match cli::log_driver::run(cli::log_driver::LogDriverArgs::parse()) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("{}: {err:#}", cli::log_driver::ARGV0);
                std::process::ExitCode::FAILURE
            }
        };
    }
    let args = cli::Cli::parse_args();
    // The infra process unshares and forks: it must stay single-threaded, so
    // it runs before (and without) the async runtime and logging.
    if let cli::Command::SandboxInfra(infra) = args.command {
        return deckhand::runtime::sandbox::infra::main(infra);
    }
    cli::init_tracing(args.log_level().as_deref());
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
