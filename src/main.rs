//! The `killkrill` binary: parse the configuration, start logging, run the library.

use std::process::ExitCode;

use clap::Parser;
use killkrill::config::{Cli, Config};

fn main() -> ExitCode {
    // `.env` fills in what the environment does not set; a missing file is fine.
    if let Err(err) = killkrill::config::load_dotenv() {
        eprintln!("killkrill: configuration error: {err}");
        return ExitCode::from(2);
    }
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return killkrill::config::report_cli_error(err),
    };
    let command = cli.command.take();
    let config = match Config::from_cli(cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("killkrill: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    let (log_level, _log_guard) = killkrill::telemetry::init(config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers)
        .thread_name("killkrill-worker")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("killkrill: WORKERS: cannot start {} worker threads: {err}", config.workers);
            return ExitCode::FAILURE;
        }
    };
    let (result, failed) = match command {
        Some(command) => (runtime.block_on(killkrill::cli::run(config, command)), "command_failed"),
        None => (runtime.block_on(killkrill::run(config, log_level)), "startup_failed"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(event = failed, error = %err);
            eprintln!("killkrill: {err}");
            ExitCode::FAILURE
        }
    }
}
