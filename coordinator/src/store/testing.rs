//! Throwaway PostgreSQL clusters for tests, usable from any test in the workspace.
//!
//! ```no_run
//! # async fn demo() {
//! use wax_coordinator::store::testing::TestPostgres;
//! let Some(pg) = TestPostgres::start() else { return }; // prints "SKIPPED: …" when absent
//! let store = wax_coordinator::store::open(pg.url()).await.unwrap();
//! # drop(store);
//! # }
//! ```
//!
//! Each [`TestPostgres`] is its own cluster (own directory, own port on 127.0.0.1), so tests
//! may run in parallel. The first one in a process runs `initdb` once into a template; later
//! ones copy it, which makes a start take a few hundred milliseconds instead of over a second.
//!
//! Clean-up does not depend on `Drop` alone: each cluster has a small watcher process that
//! holds the read end of a pipe whose write end only this process holds. Dropping the
//! [`TestPostgres`] closes the pipe, and so does the kernel when the test process dies in any
//! way (panic, abort, SIGKILL); either way the watcher stops the server and deletes the
//! directory. The watcher lives in its own process group, so a Ctrl-C aimed at `cargo test`
//! does not kill it before it has cleaned up.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Set to `required` (as CI does) to turn a missing PostgreSQL into a test failure.
pub const REQUIRE_ENV: &str = "WAX_TEST_POSTGRES";

const DATABASE: &str = "wax_test";
const SUPERUSER: &str = "postgres";
/// Attempts at finding a free port; another test may take the one we picked before we bind.
const PORT_ATTEMPTS: usize = 8;

/// A running throwaway PostgreSQL cluster; stopped and deleted on drop.
pub struct TestPostgres {
    url: String,
    port: u16,
    dir: PathBuf,
    bindir: PathBuf,
    watcher: Option<Child>,
}

impl TestPostgres {
    /// Starts a cluster with `fsync=off` (fast; durability is not what such tests check) and
    /// creates database `wax_test`. `None` (after printing `SKIPPED: PostgreSQL not
    /// installed`) when the binaries are absent, unless `WAX_TEST_POSTGRES=required`, which
    /// panics instead. Panics if PostgreSQL is installed but the cluster fails to start.
    pub fn start() -> Option<TestPostgres> {
        Self::start_with(&[])
    }

    /// Like [`TestPostgres::start`], with extra server settings (`-c name=value`) applied
    /// after the defaults: `&[("fsync", "on")]` gives a cluster that really syncs, for
    /// benchmarks.
    pub fn start_with(settings: &[(&str, &str)]) -> Option<TestPostgres> {
        let env = match environment() {
            Ok(Some(env)) => env,
            Ok(None) => {
                if std::env::var(REQUIRE_ENV).as_deref() == Ok("required") {
                    panic!(
                        "{REQUIRE_ENV}=required but PostgreSQL is not installed: no `pg_config \
                         --bindir` and no /usr/lib/postgresql/*/bin/initdb \
                         (Debian: apt-get install postgresql)"
                    );
                }
                eprintln!(
                    "SKIPPED: PostgreSQL not installed (no pg_config --bindir, no \
                     /usr/lib/postgresql/*/bin/initdb); set {REQUIRE_ENV}=required to fail instead"
                );
                return None;
            }
            Err(e) => panic!("PostgreSQL is installed but unusable for tests: {e}"),
        };
        match launch(env, settings) {
            Ok(pg) => Some(pg),
            Err(e) => panic!("cannot start a test PostgreSQL cluster: {e}"),
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/wax_test` (trust authentication, no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL through `psql` against the test database and returns its unaligned,
    /// tuples-only output; for setting up odd states (a corrupt row, a future schema).
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bindir.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", DATABASE, "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!("psql failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(mut watcher) = self.watcher.take() {
            // A line, then end of input: the watcher's signal for one orderly clean-up pass.
            if let Some(mut stdin) = watcher.stdin.take() {
                let _ = stdin.write_all(b"drop\n");
            }
            let _ = watcher.wait();
        }
        // Covers a watcher that never ran; harmless when it did.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What every cluster of this process shares.
struct Env {
    bindir: PathBuf,
    /// Some((uid, gid)) when running as root: then every server-side command runs as the
    /// `postgres` user, because initdb and postgres refuse to run as root.
    run_as: Option<(u32, u32)>,
    template: PathBuf,
    /// Keeps the template's watcher waiting until this process exits.
    _template_guard: ChildStdin,
}

fn environment() -> Result<Option<&'static Env>, String> {
    static ENV: OnceLock<Result<Option<Env>, String>> = OnceLock::new();
    ENV.get_or_init(make_env).as_ref().map(Option::as_ref).map_err(Clone::clone)
}

fn make_env() -> Result<Option<Env>, String> {
    let Some(bindir) = find_bindir() else { return Ok(None) };
    let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    let run_as = if root { Some(postgres_ids()?) } else { None };
    let template = fresh_dir("template", run_as)?;
    let guard = spawn_watcher(&bindir, run_as, &template, false)?;
    let mut init = server_command(&bindir.join("initdb"), run_as);
    init.arg("-D").arg(template.join("data"));
    init.args(["-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"]);
    run(init, "initdb")?;
    Ok(Some(Env { bindir, run_as, template, _template_guard: guard }))
}

fn launch(env: &Env, settings: &[(&str, &str)]) -> Result<TestPostgres, String> {
    let dir = fresh_dir("cluster", env.run_as)?;
    // From here on, dropping `pg` (on any error below) cleans up.
    let mut pg = TestPostgres {
        url: String::new(),
        port: 0,
        dir: dir.clone(),
        bindir: env.bindir.clone(),
        watcher: None,
    };
    pg.watcher = Some(spawn_watcher_child(&env.bindir, env.run_as, &dir, true)?);
    let data = dir.join("data");
    let mut copy = server_command(Path::new("cp"), env.run_as);
    copy.arg("-a").arg(env.template.join("data")).arg(&data);
    run(copy, "copying the template cluster")?;

    let mut options = format!("-h 127.0.0.1 -k \"{}\" -c fsync=off", dir.display());
    for (name, value) in settings {
        options.push_str(&format!(" -c {name}={value}"));
    }
    let log = dir.join("server.log");
    let mut last_error = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        let mut start = server_command(&env.bindir.join("pg_ctl"), env.run_as);
        start.arg("-D").arg(&data).arg("-l").arg(&log).args(["-w", "-t", "60", "-o"]);
        start.arg(format!("{options} -p {port}")).arg("start");
        match run(start, "pg_ctl start") {
            Ok(()) => {
                pg.port = port;
                break;
            }
            Err(e) => {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                last_error = format!("{e}\nserver log:\n{text}");
                if !text.contains("could not bind") && !text.contains("already in use") {
                    return Err(last_error);
                }
            }
        }
    }
    if pg.port == 0 {
        return Err(format!("no free port after {PORT_ATTEMPTS} attempts: {last_error}"));
    }
    let mut create = Command::new(env.bindir.join("createdb"));
    create.args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", SUPERUSER, DATABASE]);
    run(create, "createdb")?;
    pg.url = format!("postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}", pg.port);
    Ok(pg)
}

/// `pg_config --bindir` if it holds the server tools, else the newest
/// /usr/lib/postgresql/<version>/bin that does.
fn find_bindir() -> Option<PathBuf> {
    let has_tools =
        |dir: &Path| ["initdb", "pg_ctl", "createdb"].iter().all(|b| dir.join(b).is_file());
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_tools(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, SUPERUSER])
            .output()
            .map_err(|e| format!("cannot run id: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "running as root, and there is no `{SUPERUSER}` user to run the server as"
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("unexpected output of id {flag} {SUPERUSER}: {e}"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// A new empty directory under the system temp dir, owned by the server's user.
fn fresh_dir(what: &str, run_as: Option<(u32, u32)>) -> Result<PathBuf, String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("wax-pg-{what}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("cannot hand {} to {SUPERUSER}: {e}", dir.display()))?;
    }
    Ok(dir)
}

/// A command run as the server's user (`runuser -u postgres --` when we are root).
fn server_command(program: &Path, run_as: Option<(u32, u32)>) -> Command {
    match run_as {
        Some(_) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", SUPERUSER, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Starts the process that cleans `dir` up once its stdin closes: stops the server in it
/// (when `server`) and deletes it. Returns the child, whose stdin only this process holds.
///
/// A line before the end of input means an orderly drop: one pass suffices. Bare end of input
/// means this process died, possibly half-way through `initdb`, `cp` or `pg_ctl start`, which
/// keep running and can recreate files after a first pass; so it makes a few passes.
fn spawn_watcher_child(
    bindir: &Path,
    run_as: Option<(u32, u32)>,
    dir: &Path,
    server: bool,
) -> Result<Child, String> {
    let stop =
        if server { r#""$0" -D "$1/data" -m immediate -w stop >/dev/null 2>&1; "# } else { "" };
    let script = format!(
        r#"trap '' INT HUP TERM; if read -r line; then n=1; else n=5; fi; while :; do {stop}rm -rf "$1"; n=$((n-1)); [ "$n" -gt 0 ] || break; sleep 1; done"#
    );
    let mut cmd = server_command(Path::new("sh"), run_as);
    cmd.arg("-c").arg(script).arg(bindir.join("pg_ctl")).arg(dir);
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    // Its own process group: a Ctrl-C to the test run must not kill it before it cleans up.
    cmd.process_group(0);
    cmd.spawn().map_err(|e| format!("cannot start the clean-up watcher: {e}"))
}

fn spawn_watcher(
    bindir: &Path,
    run_as: Option<(u32, u32)>,
    dir: &Path,
    server: bool,
) -> Result<ChildStdin, String> {
    let mut child = spawn_watcher_child(bindir, run_as, dir, server)?;
    let stdin = child.stdin.take().ok_or("the clean-up watcher has no stdin")?;
    Ok(stdin)
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    let port = listener.local_addr().map_err(|e| format!("cannot find a free port: {e}"))?.port();
    // The port is free again once `listener` drops; `launch` retries if another process
    // takes it before the server binds it.
    Ok(port)
}
