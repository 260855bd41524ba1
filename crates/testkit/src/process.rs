//! Test servers as child processes: free loopback ports, a process killed
//! when dropped, waiting until it listens, and finding its binary.
//!
//! Every server of this crate ([`crate::nats`], [`crate::s3`],
//! [`crate::swift`]) starts and dies through these, so a server that fails
//! to start shows its log the same way. A missing server binary fails the
//! test with the command that installs it; nothing is skipped silently.
//! Everything here panics on failure: it is test code.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to run when a server binary is missing.
pub const INSTALL_HINT: &str = "run scripts/install-storage-test-deps.sh (or `make test-deps`)";

/// A free loopback port (bound then released; the servers bind it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// `n` distinct free loopback ports, all held until every one is picked.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Waits until something accepts connections on `port`; fails early, with
/// the server's log, if the process dies.
pub async fn wait_for_port(port: u16, proc: &mut Proc, log: &Path, timeout: Duration) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        proc.assert_running(log);
        if start.elapsed() > timeout {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!(
                "{} did not listen on port {port} within {timeout:?}; log:\n{text}",
                proc.name
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Option<Child>,
}

impl Proc {
    /// Starts `cmd` with its stdout and stderr going to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}; {INSTALL_HINT}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
        }
    }

    /// Kills the process and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Panics if the process has already exited, showing its log.
    pub fn assert_running(&mut self, log: &Path) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                panic!("{} exited with {status}:\n{text}", self.name);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Finds a binary: an environment override, the tools cache, then `PATH`.
pub fn find_binary(name: &str, env: &str, extra_dirs: &[PathBuf]) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    for dir in extra_dirs {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{name} not found (set {env}, or install it): {INSTALL_HINT}");
}

/// `~/.cache/dvr/tools/bin`, where the install scripts put built tools.
pub(crate) fn tools_bin() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    home.join(".cache/dvr/tools/bin")
}
