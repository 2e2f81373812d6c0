//! The `walship` command: thin; parsing, logging, dispatch and exit code.
use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::{Cli, Command};

/// Sets up logging from the config's `logging:` block (when the command reads a config)
/// and `WALSHIP_LOG` (an env-filter, which wins). Logs go to stderr unless the config says
/// `stderr: false` explicitly for `replicate`; listings own stdout so scripts can parse it.
///
/// With `log_file` (a Windows service, which has no console) logs are appended there.
fn init_logging(command: &Command, log_file: Option<std::fs::File>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use walship::config::{LogFormat, LogLevel};

    let cfg = cli::logging_config(command);
    let level = match cfg.as_ref().map(|l| l.level) {
        Some(LogLevel::Debug) => "debug",
        Some(LogLevel::Warn) => "warn",
        Some(LogLevel::Error) => "error",
        _ => "info",
    };
    // object_store logs each of its HTTP retries at info ("Encountered server error ...
    // retry 1 of 3"), several per failed sync; walship logs the failure itself, once.
    let default = if level == "info" {
        "info,object_store=warn".to_string()
    } else {
        level.to_string()
    };
    let filter = EnvFilter::try_from_env("WALSHIP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let json = cfg.as_ref().is_some_and(|l| l.format == LogFormat::Json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match (log_file, json) {
        (Some(f), true) => builder
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .json()
            .try_init(),
        (Some(f), false) => builder
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .try_init(),
        (None, true) => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .json()
            .try_init(),
        (None, false) => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

fn main() -> ExitCode {
    // Before anything can touch SQLite (see the function's docs: ~0.26 MB per database).
    walship::sqlite::disable_page_cache_prealloc();
    let args = cli::normalize_args(std::env::args());
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) if e.kind() == clap::error::ErrorKind::InvalidSubcommand => {
            let cmd = std::env::args().nth(1).unwrap_or_default();
            eprintln!("walship {cmd}: unknown command (try 'walship --help')");
            return ExitCode::from(1);
        }
        Err(e) => {
            if let Some(message) = cli::unknown_flag_message(&args, &e) {
                eprintln!("{message}");
                return ExitCode::from(1);
            }
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    #[cfg(windows)]
    if let Command::Service(a) = cli.command {
        return match cli::service::run(a, run) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    ExitCode::from(run(cli, None))
}

/// Runs a parsed command to its end; the process exit code. Logs go to `log_file` when
/// given (a Windows service), else to stderr.
fn run(cli: Cli, log_file: Option<std::fs::File>) -> u8 {
    let to_file = log_file.is_some();
    init_logging(&cli.command, log_file);
    // Bounded blocking pool: database syncs, snapshot reads and compression run there; with
    // thousands of databases an unbounded pool (and a malloc arena per thread) costs memory,
    // not speed.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.max_blocking_threads(16).enable_all();
    // `replicate` does its work (WAL copies, compression, file I/O) on the blocking pool;
    // its async side only waits on notifications, timers and the store's sockets. One
    // worker thread for that side saves the wake-ups of a second one looking for work on
    // every event. Measured (#16) on 2 cores, one worker against tokio's default of one
    // per core, `compare.py --size full --only 1 --reps 2` each: writer slowdown 1.01 vs
    // 1.17, replicator CPU for 20,000 transactions 2.57 vs 2.91 s; `steady20.py walship
    // 30`: 0.37% vs 0.43-0.47% of a core. TOKIO_WORKER_THREADS, when set, still decides.
    if matches!(cli.command, Command::Replicate(_))
        && std::env::var_os("TOKIO_WORKER_THREADS").is_none()
    {
        builder.worker_threads(1);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let res = rt.block_on(async move {
        match cli.command {
            Command::Replicate(a) => cli::replicate::run(a).await,
            Command::Restore(a) => cli::restore::run(a).await.map(|()| 0),
            Command::Snapshots(a) => cli::list::snapshots(a).await.map(|()| 0),
            Command::Generations(a) => cli::list::generations(a).await.map(|()| 0),
            Command::Wal(a) => cli::list::wal(a).await.map(|()| 0),
            Command::Databases(a) => cli::list::databases(a).map(|()| 0),
            Command::Status(a) => cli::status::run(a).await.map(|()| 0),
            Command::Version => {
                println!("walship {}", cli::VERSION);
                Ok(0)
            }
            Command::Completion(a) => {
                cli::completion(&a, &mut std::io::stdout().lock()).map(|()| 0)
            }
            Command::Man(a) => cli::man(&a, &mut std::io::stdout().lock()).map(|()| 0),
            #[cfg(windows)]
            Command::Service(_) => Ok(1),
        }
    });
    match res {
        Ok(code) => code,
        Err(e) => {
            if to_file {
                tracing::error!("{e:#}");
            } else {
                eprintln!("error: {e:#}");
            }
            1
        }
    }
}
