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
    /// Import a CSV, Parquet or line protocol file into a hub (resumable:
    /// run it again after an interruption).
    Import(Box<ferry_hub::import::cli::ImportArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Import(args) => import(*args),
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

/// `ferry-hub import`: prints the job's outcome; fails when the job did.
fn import(args: ferry_hub::import::cli::ImportArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ferry_hub::import::cli::run(args)) {
        Ok(job) if job["duplicate"] == true => {
            println!(
                "job {}: the same file was already imported ({} rows); nothing written",
                job["id"].as_str().unwrap_or("?"),
                job["rows_imported"].as_u64().unwrap_or(0)
            );
            ExitCode::SUCCESS
        }
        Ok(job) => {
            println!(
                "job {}: {} rows imported, {} rejected, into {} {}",
                job["id"].as_str().unwrap_or("?"),
                job["rows_imported"].as_u64().unwrap_or(0),
                job["rows_rejected"].as_u64().unwrap_or(0),
                job["database"].as_str().unwrap_or("?"),
                job["measurements"]
            );
            if let Some(rejected) = job["rejected"].as_array() {
                for r in rejected.iter().take(10) {
                    println!("  rejected: {r}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry-hub import: {e}");
            ExitCode::FAILURE
        }
    }
}
