//! `ferry-hub`: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry_hub::{config, server};

/// mimalloc gives freed pages back to the operating system shortly after a
/// query ends (glibc's malloc keeps them), so the hub's RSS follows the
/// memory its queries hold, not the peak of the largest one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "ferry-hub",
    version,
    about = "Ferry's hub: exactly-once Delta Lake ingest and SQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub.
    Serve {
        /// The configuration file; defaults apply without one.
        #[arg(long, short, env = "FERRY_HUB_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and print every error.
    CheckConfig {
        #[arg(long, short, env = "FERRY_HUB_CONFIG")]
        config: PathBuf,
    },
    /// Print a fully commented default configuration.
    GenerateConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::GenerateConfig => {
            print!("{}", config::TEMPLATE);
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config: path } => match config::check_file(&path) {
            Ok(()) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprint!("{}: {errors}", path.display());
                ExitCode::FAILURE
            }
        },
        Command::Serve { config: path } => {
            let config = match config::load(path.as_deref()) {
                Ok(c) => c,
                Err(errors) => {
                    eprint!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            server::logging::init(&config.log);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(server::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "ferry-hub failed");
                    eprintln!("ferry-hub: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
