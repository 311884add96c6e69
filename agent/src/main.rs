//! `ferry-agent`: parse the command line, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use ferry_agent::{app, cli, config, supervise};
use tokio_util::sync::CancellationToken;

/// The agent's allocator is mimalloc on every build. musl's allocator leaves
/// what the segment cuts free so fragmented that the agent's RSS climbs
/// without end, and glibc's keeps a cut's peak resident; with the options
/// below mimalloc gives freed pages back (docs/decisions/0024-gateway-allocator.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options for a gateway, each unless already set: commit arena
/// memory on use (idle RSS about 8 MiB instead of 17) and give freed pages
/// back at once (about 20 MiB under load instead of 41 to 58).
const ALLOCATOR_OPTIONS: [(&str, &str); 2] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "0"),
];

/// mimalloc reads its options from the environment once, before `main`, and
/// setting them later takes `unsafe`, which the workspace forbids. So a
/// `run` started without them (by hand, in a container, from an
/// init script, a test) executes itself again with them added, as the packaged
/// unit would have started it. Returns only if that is not needed or fails.
fn exec_with_allocator_options() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    const DONE: &str = "FERRY_AGENT_ALLOCATOR_OPTIONS";
    if std::env::var_os(DONE).is_some() {
        return;
    }
    let missing: Vec<_> = ALLOCATOR_OPTIONS
        .iter()
        .filter(|(key, _)| std::env::var_os(key).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!(
                "ferry-agent: could not find its own binary to restart with mimalloc's options ({error}); running with its defaults"
            );
            return;
        }
    };
    let c = |bytes: &[u8]| CString::new(bytes).ok();
    let args: Option<Vec<CString>> = std::env::args_os().map(|a| c(a.as_bytes())).collect();
    let env: Option<Vec<CString>> = std::env::vars_os()
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .chain(std::iter::once(format!("{DONE}=1").into_bytes()))
        .chain(missing.iter().map(|(k, v)| format!("{k}={v}").into_bytes()))
        .map(|kv| c(&kv))
        .collect();
    let (Some(path), Some(args), Some(env)) = (c(exe.as_os_str().as_bytes()), args, env) else {
        eprintln!(
            "ferry-agent: could not restart with mimalloc's options (a NUL byte in its path, arguments or environment); running with its defaults"
        );
        return;
    };
    // execve itself, not `Command::exec`: that calls glibc's execvp, which
    // hands a file the kernel cannot execute (ENOEXEC: an ARM binary under
    // qemu-user without binfmt_misc) to /bin/sh as a script.
    let Err(error) = nix::unistd::execve(&path, &args, &env);
    eprintln!(
        "ferry-agent: could not restart with mimalloc's options ({error}); running with its defaults"
    );
}

#[derive(Parser, Debug)]
#[command(
    name = "ferry-agent",
    version,
    about = "Ferry's gateway agent: MQTT broker, durable buffer, uplink to the hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent.
    Run {
        /// The config file (TOML). Without it, every default applies.
        #[arg(long, short, env = "FERRY_AGENT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a config file and print every problem with its key path.
    CheckConfig {
        #[arg(long, short, env = "FERRY_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Print a fully commented default config.
    GenerateConfig,
    /// Show the running agent's backlog, uplink state and drops.
    Status {
        /// The agent's local HTTP address.
        #[arg(long, default_value = "127.0.0.1:9180", env = "FERRY_AGENT_HTTP")]
        http: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. }) {
        exec_with_allocator_options();
    }
    match cli.command {
        Command::GenerateConfig => {
            print!("{}", config::TEMPLATE);
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config: path } => match config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Status { http, json } => match cli::status(&http, json) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ferry-agent status: {e}");
                ExitCode::from(1)
            }
        },
        Command::Run { config: path } => {
            let config = match path {
                Some(p) => match config::load(&p) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                },
                None => config::AgentConfig::default(),
            };
            cli::init_logging(&config.log);
            // Crash-only: from here on a panic anywhere ends the process,
            // recorded in the lifecycle file (see supervise::crash).
            if let Err(e) = std::fs::create_dir_all(&config.agent.data_dir) {
                eprintln!(
                    "ferry-agent: cannot create {}: {e}",
                    config.agent.data_dir.display()
                );
                return ExitCode::from(1);
            }
            let lifecycle = Arc::new(supervise::Lifecycle::start(&config.agent.data_dir));
            supervise::install_panic_hook(lifecycle.clone());
            match run(config, lifecycle.clone()) {
                Ok(()) => {
                    lifecycle.clean_stop();
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "ferry-agent failed");
                    eprintln!("ferry-agent: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run(config: config::AgentConfig, lifecycle: Arc<supervise::Lifecycle>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferry-agent")
        .build()?;
    runtime.block_on(async {
        let metrics = ferry_agent::metrics::recorder()?.install_recorder()?;
        supervise::publish_lifecycle(&lifecycle.record());
        let shutdown = CancellationToken::new();
        let stall_timeout = config.supervisor.stall_timeout;
        let running =
            app::start(config, metrics, shutdown.clone(), Some(lifecycle.clone())).await?;
        // systemd's watchdog is pinged only while every component is
        // healthy; a component stalled past stall_timeout ends the process.
        let monitor = supervise::Monitor::spawn(
            running.liveness.clone(),
            supervise::MonitorOptions {
                watchdog: cli::watchdog_interval(),
                stall_timeout,
            },
            Some(lifecycle),
            cli::notify,
        )?;
        cli::notify("READY=1");
        cli::wait_for_signal().await;
        cli::notify("STOPPING=1");
        shutdown.cancel();
        let result = running.wait().await;
        monitor.stop();
        result
    })
}
