//! `braid`: the command-line front of Braid.
//!
//! Today it launches and inspects private test networks (`braid testnet`),
//! bootstraps the directory (`braid dir`) and runs the demo (`braid demo`);
//! makes a relay's keys, publishes its descriptor and runs it (`braid relay`);
//! the SOCKS proxy (`braid proxy`) comes
//! with the client issues.

mod bench;
mod cli;
mod demo;
mod demo_resume;
mod dir_cmd;
mod proxy_cmd;
mod relay_cmd;
mod status_cmd;
mod streams_cmd;
mod testnet_cmd;

use clap::Parser;

use crate::cli::{BenchCmd, Cli, Command, RelayCmd};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Long-running processes log at info by default.
    init_logging(
        cli.verbose,
        matches!(cli.command, Command::Testnet(ref t) if t.is_helper())
            || matches!(cli.command, Command::Relay(RelayCmd::Run(_))),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report_error(&e);
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: Result<(), Box<dyn std::error::Error>> = runtime.block_on(async {
        match cli.command {
            Command::Testnet(cmd) => testnet_cmd::run(cmd).await.map_err(Box::from),
            Command::Demo(args) => demo::run(*args).await.map_err(Box::from),
            Command::Dir(args) => dir_cmd::run(args).await.map_err(Box::from),
            Command::Proxy(args) => proxy_cmd::run(args).await.map_err(Box::from),
            Command::Status(args) => status_cmd::run(args).await.map_err(Box::from),
            Command::Streams(args) => streams_cmd::run(args).await.map_err(Box::from),
            Command::Bench(BenchCmd::Single(args)) => bench::single(args).await.map_err(Box::from),
            Command::Bench(BenchCmd::Conflux(args)) => {
                bench::conflux(args).await.map_err(Box::from)
            }
            Command::Bench(BenchCmd::Relay(args)) => bench::relay(args).await.map_err(Box::from),
            Command::Bench(BenchCmd::Soak(args)) => bench::soak(args).await.map_err(Box::from),
            Command::Bench(BenchCmd::Resume(args)) => bench::resume(args).await.map_err(Box::from),
            Command::Bench(BenchCmd::Dir(args)) => bench::dir(args).await.map_err(Box::from),
            Command::Relay(cmd) => relay_cmd::run(cmd).await.map_err(Box::from),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stderr, reason = "the CLI reports its errors on stderr")]
fn report_error(e: &dyn std::fmt::Display) {
    eprintln!("error: {e}");
}

fn init_logging(verbose: u8, helper: bool) {
    let level = match (verbose, helper) {
        (0, false) => tracing::Level::WARN,
        (0, true) | (1, _) => tracing::Level::INFO,
        (2, _) => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
