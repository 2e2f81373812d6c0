//! `walship service` (Windows only): walship as a Windows service, without NSSM or the Task
//! Scheduler. `install` registers a service (default name `walship`) that runs one walship
//! command, `replicate` or the follower `restore -f`, at boot as LocalSystem; `uninstall`
//! stops and removes it. The Service Control Manager starts the registered command line
//! `walship.exe service run --name NAME -- <command>`; a stop from it (`sc stop NAME`, the
//! Services panel, system shutdown) runs the same final sync as Ctrl-C, and the service
//! reports "stop pending" until it is done.
//!
//! A service has no console: its log goes to `%ProgramData%\walship\NAME.log` (appended).
//! Litestream v0.3.13 logs to the event log instead.
use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::{Cli, Command};

/// Arguments of `service`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub action: ServiceAction,
}

/// What `service` does.
#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Register a Windows service that runs a walship command at boot (default:
    /// `replicate` with the default config, C:\Litestream\litestream.yml). Then start it
    /// with `sc start NAME`.
    #[command(
        after_help = "Examples:\n  walship service install -- replicate -config \
        C:\\ProgramData\\litestream\\litestream.yml\n  walship service install -name \
        walship-follow -- restore -f -config C:\\Litestream\\litestream.yml \
        C:\\Users\\me\\app.db"
    )]
    Install {
        /// The service's name.
        #[arg(long, default_value = "walship")]
        name: String,
        /// `auto`: started at boot; `manual`: only by `sc start NAME`.
        #[arg(long, value_parser = ["auto", "manual"], default_value = "auto")]
        start: String,
        /// The walship command the service runs: `replicate ...` or `restore -f ...`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Stop and remove a service made by `walship service install`.
    Uninstall {
        /// The service's name.
        #[arg(long, default_value = "walship")]
        name: String,
    },
    /// What the Service Control Manager runs (not for use from a console).
    #[command(hide = true)]
    Run {
        #[arg(long)]
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// Runs a parsed command to its end and returns the process exit code (main.rs).
pub type Runner = fn(Cli, Option<std::fs::File>) -> u8;

/// Runs `service install|uninstall|run`.
pub fn run(args: ServiceArgs, runner: Runner) -> anyhow::Result<u8> {
    match args.action {
        ServiceAction::Install {
            name,
            start,
            command,
        } => install(&name, start == "auto", command).map(|()| 0),
        ServiceAction::Uninstall { name } => uninstall(&name).map(|()| 0),
        ServiceAction::Run { name, command } => {
            parse(&command)?;
            let _ = RUN.set((name.clone(), command, runner));
            service_dispatcher::start(&name, ffi_service_main).with_context(|| {
                format!(
                    "walship service run: only the Service Control Manager starts this \
                     (sc start {name}); to run walship in a console, run the command itself"
                )
            })?;
            Ok(EXIT.get().copied().unwrap_or(0))
        }
    }
}

/// The walship command a service runs, parsed and checked.
fn parse(command: &[String]) -> anyhow::Result<Cli> {
    let argv = std::iter::once("walship".to_string()).chain(command.iter().cloned());
    let cli = <Cli as clap::Parser>::try_parse_from(super::normalize_args(argv))
        .map_err(|e| anyhow::anyhow!("the service's command does not parse: {e}"))?;
    match &cli.command {
        Command::Replicate(_) => {}
        Command::Restore(r) if r.follow => {}
        _ => bail!(
            "a service runs `replicate ...` or `restore -f ...`, not {:?}",
            command.join(" ")
        ),
    }
    Ok(cli)
}

fn install(name: &str, at_boot: bool, mut command: Vec<String>) -> anyhow::Result<()> {
    if command.is_empty() {
        command.push("replicate".into());
    }
    parse(&command)?;
    // A service starts in C:\Windows\System32: a relative -config would point there.
    let mut i = 0;
    while i + 1 < command.len() {
        if matches!(command[i].as_str(), "-config" | "--config") {
            let p = PathBuf::from(&command[i + 1]);
            if p.is_relative() {
                command[i + 1] = std::path::absolute(&p)?.display().to_string();
            }
        }
        i += 1;
    }
    let exe = std::env::current_exe().context("where is walship.exe?")?;
    let mut launch: Vec<OsString> = ["service", "run", "--name", name, "--"]
        .iter()
        .map(OsString::from)
        .collect();
    launch.extend(command.iter().map(OsString::from));
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .context("cannot open the Service Control Manager (run as Administrator)")?;
    let info = ServiceInfo {
        name: name.into(),
        display_name: format!("walship ({name})").into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: if at_boot {
            ServiceStartType::AutoStart
        } else {
            ServiceStartType::OnDemand
        },
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.clone(),
        launch_arguments: launch,
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .with_context(|| {
            format!("cannot create the service {name:?} (exists already? run as Administrator?)")
        })?;
    let what = command.join(" ");
    service
        .set_description(format!(
            "SQLite replication, Litestream-compatible: walship {what}"
        ))
        .context("set the service's description")?;
    // Not println!: it panics when stdout was closed (`walship service install | head -1`).
    let _ = writeln!(
        std::io::stdout(),
        "installed the service {name}: it runs `{} {what}`{}.\nStart it now: sc start \
         {name}\nIts log: {}",
        exe.display(),
        if at_boot { " at boot" } else { " when started" },
        log_path(name).display()
    );
    Ok(())
}

fn uninstall(name: &str) -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("cannot open the Service Control Manager (run as Administrator)")?;
    let service = manager
        .open_service(
            name,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .with_context(|| format!("no service {name:?} to uninstall"))?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        service.stop().context("stop the service")?;
        // The final sync runs before it stops: wait for it, as long as a stop may take.
        let deadline = std::time::Instant::now() + STOP_WAIT;
        while service.query_status()?.current_state != ServiceState::Stopped {
            if std::time::Instant::now() > deadline {
                bail!("the service {name} did not stop within {STOP_WAIT:?}; not removed");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    service.delete().context("remove the service")?;
    let _ = writeln!(std::io::stdout(), "removed the service {name}");
    Ok(())
}

/// How long a stop may take (the final sync), told to the Service Control Manager.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// `%ProgramData%\walship\NAME.log`.
fn log_path(name: &str) -> PathBuf {
    let base = std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
    PathBuf::from(base)
        .join("walship")
        .join(format!("{name}.log"))
}

static RUN: OnceLock<(String, Vec<String>, Runner)> = OnceLock::new();
static EXIT: OnceLock<u8> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

fn service_main(_args: Vec<OsString>) {
    let Some((name, command, runner)) = RUN.get() else {
        return;
    };
    // Set once registered; the handler reports "stop pending" through it.
    let handle: std::sync::Arc<OnceLock<ServiceStatusHandle>> = Default::default();
    let h2 = handle.clone();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            super::process::request_service_stop();
            if let Some(h) = h2.get() {
                set_status(
                    *h,
                    ServiceState::StopPending,
                    ServiceControlAccept::empty(),
                    0,
                    STOP_WAIT,
                );
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(status) = service_control_handler::register(name, handler) else {
        return;
    };
    let _ = handle.set(status);
    let set =
        |state, accept, exit: u32, wait: Duration| set_status(status, state, accept, exit, wait);
    set(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        0,
        Duration::ZERO,
    );
    let path = log_path(name);
    let log = std::fs::create_dir_all(path.parent().expect("has a parent"))
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
        })
        .ok();
    // Checked before the dispatcher started.
    let code = match parse(command) {
        Ok(cli) => runner(cli, log),
        Err(_) => 1,
    };
    let _ = EXIT.set(code);
    set(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        u32::from(code),
        Duration::ZERO,
    );
}

fn set_status(
    h: ServiceStatusHandle,
    state: ServiceState,
    accept: ServiceControlAccept,
    exit: u32,
    wait: Duration,
) {
    let _ = h.set_service_status(ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: accept,
        exit_code: if exit == 0 {
            ServiceExitCode::Win32(0)
        } else {
            ServiceExitCode::ServiceSpecific(exit)
        },
        checkpoint: 0,
        wait_hint: wait,
        process_id: None,
    });
}
