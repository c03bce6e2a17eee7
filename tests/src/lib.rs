//! # wax-tests
//!
//! Tests that drive the real `wax` binary as a user would: end-to-end runs, multi-process
//! set-ups and fault injection. The binary is built by `make test` (or `cargo build --bin wax`)
//! before these run; [`wax_bin`] finds it.

pub mod s3;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The `wax` binary under test: `$WAX_BIN`, else `target/{debug,release}/wax` (newest).
///
/// # Panics
/// With instructions when no binary has been built.
pub fn wax_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WAX_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    ["debug", "release"]
        .iter()
        .map(|profile| target.join(profile).join("wax"))
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| {
            panic!(
                "no wax binary under {}: run `cargo build --bin wax` (make test does)",
                target.display()
            )
        })
}

/// Runs `wax` with `args` and a clean library path (the binary must find libtorch by itself).
pub fn wax(args: &[&str]) -> Output {
    wax_env(args, &[])
}

/// Like [`wax`], with extra environment variables. `WAX_*` variables of the calling
/// environment are removed so that only the given ones apply.
pub fn wax_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().expect("wax binary runs")
}

/// `wax args…` with a clean library path (the binary must find libtorch by itself), without
/// the calling environment's `WAX_*` variables, and with `env` set.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(wax_bin());
    cmd.args(args).env_remove("LD_LIBRARY_PATH");
    for (k, _) in std::env::vars() {
        if k.starts_with("WAX_") && k != "WAX_BIN" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Standard output of a command that must have succeeded.
///
/// # Panics
/// If it failed, naming `what`, with both outputs.
pub fn succeeded(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new bearer token with `role`, appended to the tokens file `tokens`.
pub fn new_token(tokens: &std::path::Path, name: &str, role: &str) -> String {
    let t = tokens.to_str().expect("UTF-8 path");
    let out = wax(&["token", "new", "--name", name, "--role", role, "--append", t]);
    succeeded(&out, "wax token new").trim().to_string()
}

/// Standard output of a successful run.
///
/// # Panics
/// If the command failed, with its standard error.
pub fn wax_ok(args: &[&str]) -> String {
    let out = wax(args);
    assert!(
        out.status.success(),
        "wax {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A `wax serve` child process.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub addr: String,
}

impl ServeProcess {
    /// Starts `wax serve` with `args` (and `env`), waiting for its "listening on ADDR" line.
    ///
    /// # Panics
    /// If it does not start within 30 s, with what it printed.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        use std::io::{BufRead, BufReader};
        let mut cmd = Command::new(wax_bin());
        cmd.arg("serve").args(args).env_remove("LD_LIBRARY_PATH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("wax serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(addr) => ServeProcess { child, addr },
            Err(_) => {
                let _ = child.kill();
                panic!("wax serve did not start: {:?}", child.wait_with_output());
            }
        }
    }

    /// SIGKILL: no shutdown, no flushing — what a crash or an OOM kill does.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The builtin-model cache the tests share (`target/wax-builtin-cache/`), never the user's.
pub fn builtin_cache_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("wax-builtin-cache")
}

/// Runs `wax` with `WAX_CACHE_DIR` set to [`builtin_cache_dir`].
pub fn wax_builtin(args: &[&str]) -> Output {
    let cache = builtin_cache_dir().display().to_string();
    wax_env(args, &[("WAX_CACHE_DIR", cache.as_str())])
}

/// A `wax worker` child process; its standard error goes to a log file.
pub struct WorkerProcess {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    /// Starts `wax worker` with `args` and `env` (plus `WAX_CACHE_DIR` set to the tests'
    /// shared builtin cache unless `env` sets it), logging to `log`.
    pub fn start(args: &[&str], env: &[(&str, &str)], log: &std::path::Path) -> WorkerProcess {
        let file = std::fs::File::create(log).expect("worker log file");
        let cache = builtin_cache_dir().display().to_string();
        let mut all = vec![("WAX_CACHE_DIR", cache.as_str())];
        all.extend_from_slice(env);
        let mut cmd = command(&[&["worker"], args].concat(), &all);
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("wax worker starts");
        WorkerProcess { child, log: log.to_path_buf() }
    }

    /// SIGKILL: what an OOM kill or a lost machine does.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (at most `timeout`) for the worker to drain and exit.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let until = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < until {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wax` with `args` and `env` like [`wax_env`], killing it after `timeout` (a hung
/// command fails the test instead of hanging it).
///
/// # Panics
/// On timeout, with what the command printed.
pub fn wax_timeout(args: &[&str], env: &[(&str, &str)], timeout: std::time::Duration) -> Output {
    let cache = builtin_cache_dir().display().to_string();
    let mut all = vec![("WAX_CACHE_DIR", cache.as_str())];
    all.extend_from_slice(env);
    let mut child = command(args, &all)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wax runs");
    // Read both pipes as the command writes, so that a chatty command never blocks on a full
    // pipe.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out_reader = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err_reader = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let until = std::time::Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if std::time::Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match status {
        Some(status) => Output { status, stdout, stderr },
        None => panic!(
            "wax {args:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// The project's Python (`.wax/python`, made by `make bootstrap`).
pub fn python() -> PathBuf {
    workspace_root().join(".wax/python")
}
