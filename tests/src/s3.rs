//! A throwaway S3-protocol server for tests: moto (`moto_server`, from the project's Python
//! environment), on 127.0.0.1 with a port the server picks itself.
//!
//! Why moto: of the S3-protocol servers that install from a registry without Docker, it is the
//! one that honours conditional writes atomically (`If-None-Match: *`: of 32 concurrent
//! creators of one key exactly one wins, measured on this project's machines), which the
//! `_COMMITTED` marker uses. It does not check request signatures; wax signs every request
//! anyway.
//!
//! The server stops when the [`TestS3`] is dropped, and also when the test process dies in any
//! way: it runs under a small shell that holds a pipe whose write end only the test process
//! has, and kills the server when that pipe closes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The test credentials (moto does not check them).
pub const ACCESS_KEY: &str = "wax-test";
pub const SECRET_KEY: &str = "wax-test-secret";

/// Set to `required` (as `make test` does) to turn a missing moto into a test failure.
pub const REQUIRE_ENV: &str = "WAX_TEST_S3";

/// A running moto server.
pub struct TestS3 {
    endpoint: String,
    child: Child,
}

impl TestS3 {
    /// Starts `moto_server` from the Python environment whose interpreter is `python` (the
    /// venv's `bin/python`, or a wrapper script next to which `moto_server` is found through
    /// `python -c`). `None` (after printing `SKIPPED: …`) when moto is not installed, unless
    /// `WAX_TEST_S3=required`, which panics instead.
    pub fn start(python: &Path) -> Option<TestS3> {
        let server = match moto_server(python) {
            Some(s) => s,
            None => {
                if std::env::var(REQUIRE_ENV).as_deref() == Ok("required") {
                    panic!(
                        "{REQUIRE_ENV}=required but moto is not installed in {} \
                         (python/requirements.txt has it; run `make bootstrap`)",
                        python.display()
                    );
                }
                eprintln!(
                    "SKIPPED: moto (an S3-protocol server) not installed for {}; set \
                     {REQUIRE_ENV}=required to fail instead",
                    python.display()
                );
                return None;
            }
        };
        let script = format!(
            "'{}' -H 127.0.0.1 -p 0 & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid",
            server.display()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", server.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("Running on http://") {
                    let url = line[at + "Running on ".len()..].trim().to_string();
                    let _ = tx.send(url);
                }
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("moto did not start within 60 s");
            }
        };
        Some(TestS3 { endpoint, child })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The settings that reach this server, as `(key, value)` pairs of the `[s3]` settings
    /// table (test credentials: moto accepts any, wax signs with them anyway).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("endpoint", self.endpoint.clone()),
            ("region", "us-east-1".into()),
            ("access_key_id", ACCESS_KEY.into()),
            ("secret_access_key", SECRET_KEY.into()),
            ("allow_http", "true".into()),
        ]
    }

    /// Creates `bucket` (a plain `PUT /bucket`, which moto accepts unsigned).
    pub fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let host = self.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("{host}: {e}"));
        write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .expect("request");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "creating bucket {bucket}: {reply}");
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        // Closing the pipe makes the shell stop the server.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn moto_server(python: &Path) -> Option<PathBuf> {
    let out = Command::new(python)
        .args(["-c", "import sys, os, moto.server; print(os.path.join(os.path.dirname(sys.executable), 'moto_server'))"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    path.is_file().then_some(path)
}
