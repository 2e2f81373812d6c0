//! Signals and child processes, per operating system: what stops walship (SIGINT/SIGTERM on
//! Unix; Ctrl-C, Ctrl-Break, closing the console and system shutdown on Windows: each runs
//! the final sync) and how a `-exec` command is told to stop.

/// What stopped walship, for the logs; on Unix, the signal number forwarded to `-exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop(pub i32);

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => f.write_str("service stop"),
            2 => f.write_str("SIGINT (Ctrl-C)"),
            15 => f.write_str("SIGTERM"),
            21 => f.write_str("Ctrl-Break"),
            1 => f.write_str("console closed"),
            6 => f.write_str("system shutdown"),
            n => write!(f, "signal {n}"),
        }
    }
}

/// Waits for the next request to stop (never returns if no handler can be installed).
pub async fn next_stop() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut i), Ok(mut t)) => {
                tokio::select! {
                    _ = i.recv() => Stop(libc::SIGINT),
                    _ = t.recv() => Stop(libc::SIGTERM),
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(windows)]
    {
        use tokio::signal::windows;
        // Each is waited for if it could be set up (a service has no console, so the console
        // events may fail there while the service stop still works).
        async fn wait<T>(h: std::io::Result<T>, recv: impl AsyncFn(&mut T) -> Option<()>) {
            match h {
                Ok(mut h) => {
                    recv(&mut h).await;
                }
                Err(_) => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = wait(windows::ctrl_c(), async |h| h.recv().await) => Stop(2),
            _ = wait(windows::ctrl_break(), async |h| h.recv().await) => Stop(21),
            _ = wait(windows::ctrl_close(), async |h| h.recv().await) => Stop(1),
            _ = wait(windows::ctrl_shutdown(), async |h| h.recv().await) => Stop(6),
            _ = SERVICE_STOP.notified() => Stop(0),
        }
    }
}

/// Told by the Windows service's control handler when the Service Control Manager asks
/// the service to stop; one stored wake-up, so a stop that comes before anyone waits is
/// not lost.
#[cfg(windows)]
static SERVICE_STOP: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Asks the running command to stop as Ctrl-C does (its final sync runs).
#[cfg(windows)]
pub fn request_service_stop() {
    SERVICE_STOP.notify_one();
}

/// Passes a stop request on to a `-exec` command. On Unix, the same signal. On Windows a
/// console's Ctrl-C and Ctrl-Break already reach every process attached to it, the child
/// included; for the other requests the child is ended (`TerminateProcess`).
pub fn forward(child: &mut tokio::process::Child, stop: Stop) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        unsafe {
            libc::kill(pid, stop.0);
        }
    }
    #[cfg(windows)]
    if !matches!(stop.0, 2 | 21) {
        let _ = child.start_kill();
    }
}

/// The exit code walship passes on for a child's status: its code, or 128 + the signal
/// that ended it (as shells report it).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => c,
            (None, Some(sig)) => 128 + sig,
            _ => 1,
        }
    }
    #[cfg(windows)]
    {
        status.code().unwrap_or(1)
    }
}

/// Asks a `-exec` command to stop (SIGTERM on Unix), gives it up to 10 s, then ends it.
/// On Windows it is ended at once: there is no signal to ask with.
pub async fn stop_child(c: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = c.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a pid we spawned.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    #[cfg(windows)]
    let _ = c.start_kill();
    if tokio::time::timeout(std::time::Duration::from_secs(10), c.wait())
        .await
        .is_err()
    {
        let _ = c.kill().await;
    }
}

/// Splits a `-exec` command line into the program and its arguments. On Unix as a POSIX
/// shell would (quotes, backslash escapes), as Litestream does. On Windows as Windows
/// programs split their own command line (`CommandLineToArgvW`): a backslash is a path
/// separator, so `C:\Program Files\app\app.exe` is written `"C:\Program Files\app\app.exe"`,
/// not with doubled backslashes (Litestream's splitter drops them).
pub fn split_command(cmd: &str) -> anyhow::Result<Vec<String>> {
    #[cfg(unix)]
    {
        Ok(shell_words::split(cmd)?)
    }
    #[cfg(windows)]
    {
        if cmd.trim().is_empty() {
            return Ok(Vec::new());
        }
        let wide: Vec<u16> = cmd.encode_utf16().chain(Some(0)).collect();
        let mut n = 0i32;
        // SAFETY: a NUL-terminated wide string; the result is an array of `n` NUL-terminated
        // wide strings in one allocation, freed with LocalFree below.
        unsafe {
            let argv = windows_sys::Win32::UI::Shell::CommandLineToArgvW(wide.as_ptr(), &mut n);
            if argv.is_null() {
                return Err(std::io::Error::last_os_error().into());
            }
            let mut out = Vec::with_capacity(n.max(0) as usize);
            for i in 0..n.max(0) as usize {
                let p = *argv.add(i);
                let len = (0..).take_while(|&j| *p.add(j) != 0).count();
                out.push(String::from_utf16_lossy(std::slice::from_raw_parts(p, len)));
            }
            windows_sys::Win32::Foundation::LocalFree(argv.cast());
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn unix_command_lines_split_like_a_shell() {
        assert_eq!(
            split_command(r#"app --db "/data/my app.db" it\'s"#).unwrap(),
            ["app", "--db", "/data/my app.db", "it's"]
        );
    }

    #[cfg(windows)]
    #[test]
    fn windows_command_lines_keep_their_backslashes() {
        assert_eq!(
            split_command(r#""C:\Program Files\app\app.exe" --db C:\data\app.db "a b""#).unwrap(),
            [
                r"C:\Program Files\app\app.exe",
                "--db",
                r"C:\data\app.db",
                "a b"
            ]
        );
        assert!(split_command("  ").unwrap().is_empty());
    }
}
