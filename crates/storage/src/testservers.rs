//! Real servers for integration tests, started on loopback ports the
//! harness picks and stopped when dropped: `s3s-fs` for S3 and a one-node
//! Swift (proxy with tempauth and s3api, account, container and object
//! servers, memcached).
//!
//! It lives in the library (feature `testsuite`) rather than in one crate's
//! `tests/` so that every crate's tests (the storage conformance suite, the
//! `dvr run` end-to-end tests) start the servers the same way. A missing
//! server binary fails the test with the command that installs it; nothing
//! is skipped silently. Everything here panics on failure: it is test code.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::MIN_PART_SIZE;
use crate::{Secret, StorageConfig};

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

fn tools_bin() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    home.join(".cache/dvr/tools/bin")
}

/// The access key `s3s-fs` accepts.
pub const S3_ACCESS_KEY: &str = "dvr-test-access";
/// The secret key `s3s-fs` accepts.
pub const S3_SECRET_KEY: &str = "dvr-test-secret-0123456789";

/// `s3s-fs` serving a temp directory; each top-level directory is a bucket.
#[derive(Debug)]
pub struct S3sFs {
    /// The loopback port it listens on (the same across restarts).
    pub port: u16,
    /// Holds `data/` (the buckets) and the server's log.
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    bin: PathBuf,
}

impl S3sFs {
    /// Starts a server with these (empty) buckets.
    pub async fn start(buckets: &[&str]) -> Self {
        let bin = find_binary("s3s-fs", "S3S_FS_BIN", &[tools_bin()]);
        let dir = tempfile::tempdir().expect("tempdir");
        for b in buckets {
            std::fs::create_dir_all(dir.path().join("data").join(b)).expect("bucket dir");
        }
        let mut me = Self {
            port: free_port(),
            dir,
            proc: None,
            bin,
        };
        me.restart().await;
        me
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory holding the buckets (one subdirectory each).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log (both runs, if restarted: the second overwrites).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("s3s-fs.log")
    }

    /// A storage config that reaches this server with its credentials, and
    /// nothing from the environment or `~/.aws`.
    pub fn storage_config(&self) -> StorageConfig {
        let mut cfg = StorageConfig {
            part_size: MIN_PART_SIZE,
            ..StorageConfig::default()
        };
        cfg.s3.endpoint = Some(self.endpoint());
        cfg.s3.region = Some("us-east-1".into());
        cfg.s3.access_key_id = Some(S3_ACCESS_KEY.into());
        cfg.s3.secret_access_key = Some(Secret::new(S3_SECRET_KEY));
        cfg.s3.load_default_credentials = false;
        cfg
    }

    /// Kills the server; its data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Starts (again) on the same port and data directory.
    pub async fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--access-key")
            .arg(S3_ACCESS_KEY)
            .arg("--secret-key")
            .arg(S3_SECRET_KEY)
            .arg(self.data_dir());
        let log = self.log();
        let mut p = Proc::spawn("s3s-fs", &mut cmd, &log);
        wait_for_port(self.port, &mut p, &log, Duration::from_secs(30)).await;
        self.proc = Some(p);
    }
}

/// The tempauth user of the one-node Swift (also its S3 access key).
pub const SWIFT_USER: &str = "test:tester";
/// The tempauth key of [`SWIFT_USER`] (also its S3 secret key).
pub const SWIFT_KEY: &str = "testing";

/// A one-node Swift under a temp directory: memcached, account, container,
/// object and proxy servers (tempauth, s3api, slo, bulk).
#[derive(Debug)]
pub struct SwiftNode {
    /// The proxy's port (Swift API, tempauth and S3 API).
    pub proxy_port: u16,
    /// Memcached's port (tempauth keeps its tokens there).
    pub memcache_port: u16,
    /// Configs, rings, the device directory and the servers' logs.
    pub dir: tempfile::TempDir,
    procs: Vec<Proc>,
}

impl SwiftNode {
    /// The tempauth URL, `http://127.0.0.1:PORT/auth/v1.0`.
    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/auth/v1.0", self.proxy_port)
    }

    /// The proxy's base URL, the S3 API's endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }

    /// A storage config that logs in to this node with tempauth.
    pub fn storage_config(&self) -> StorageConfig {
        let mut cfg = StorageConfig {
            part_size: MIN_PART_SIZE,
            ..StorageConfig::default()
        };
        cfg.swift.auth_url = Some(self.auth_url());
        cfg.swift.user = Some(SWIFT_USER.into());
        cfg.swift.key = Some(Secret::new(SWIFT_KEY));
        cfg
    }

    /// Starts every server and waits until each listens.
    pub async fn start() -> Self {
        let ring_builder = find_binary("swift-ring-builder", "SWIFT_RING_BUILDER", &[]);
        let memcached = find_binary("memcached", "MEMCACHED_BIN", &["/usr/bin".into()]);
        let servers: Vec<(&str, PathBuf)> = ["proxy", "account", "container", "object"]
            .into_iter()
            .map(|s| {
                let name = format!("swift-{s}-server");
                (
                    s,
                    find_binary(&name, "SWIFT_BIN_UNUSED", &["/usr/bin".into()]),
                )
            })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("srv/d1")).expect("device dir");
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into());
        let ports = free_ports(5);
        let (memcache_port, proxy_port, account_port, container_port, object_port) =
            (ports[0], ports[1], ports[2], ports[3], ports[4]);

        std::fs::write(
            d.join("swift.conf"),
            "[swift-hash]\nswift_hash_path_suffix = dvrtest\nswift_hash_path_prefix = dvrtest\n\n\
             [storage-policy:0]\nname = Policy-0\ndefault = yes\n",
        )
        .expect("swift.conf");
        for (ring, port) in [
            ("account", account_port),
            ("container", container_port),
            ("object", object_port),
        ] {
            let builder = d.join(format!("{ring}.builder"));
            let run = |args: &[&str]| {
                let out = Command::new(&ring_builder)
                    .arg(&builder)
                    .args(args)
                    .output()
                    .unwrap_or_else(|e| panic!("swift-ring-builder: {e}; {INSTALL_HINT}"));
                // 1 is "warning" (e.g. fewer devices than replicas would like).
                assert!(
                    matches!(out.status.code(), Some(0 | 1)),
                    "swift-ring-builder {args:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            run(&["create", "6", "1", "0"]);
            run(&["add", &format!("r1z1-127.0.0.1:{port}/d1"), "100"]);
            run(&["rebalance"]);
            assert!(
                d.join(format!("{ring}.ring.gz")).is_file(),
                "{ring} ring not written"
            );
        }
        let common = |port: u16| {
            format!(
                "[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {port}\nworkers = 0\nuser = {user}\n\
                 swift_dir = {dir}\ndevices = {dir}/srv\nmount_check = false\nlog_level = WARNING\n\
                 log_name = swift-test\n",
                dir = d.display()
            )
        };
        for (name, port) in [
            ("account", account_port),
            ("container", container_port),
            ("object", object_port),
        ] {
            let conf = format!(
                "{}\n[pipeline:main]\npipeline = {name}-server\n\n[app:{name}-server]\nuse = egg:swift#{name}\n\n\
                 [{name}-replicator]\n[{name}-auditor]\n[{name}-updater]\n",
                common(port)
            );
            std::fs::write(d.join(format!("{name}-server.conf")), conf).expect("server conf");
        }
        let proxy = format!(
            "{common}\n[pipeline:main]\n\
             pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo proxy-logging proxy-server\n\n\
             [app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\nallow_account_management = true\n\n\
             [filter:catch_errors]\nuse = egg:swift#catch_errors\n\n\
             [filter:gatekeeper]\nuse = egg:swift#gatekeeper\n\n\
             [filter:healthcheck]\nuse = egg:swift#healthcheck\n\n\
             [filter:proxy-logging]\nuse = egg:swift#proxy_logging\n\n\
             [filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:{memcache_port}\n\n\
             [filter:listing_formats]\nuse = egg:swift#listing_formats\n\n\
             [filter:bulk]\nuse = egg:swift#bulk\n\n\
             [filter:s3api]\nuse = egg:swift#s3api\nlocation = us-east-1\n\n\
             [filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = {key} .admin\ntoken_life = 86400\n\n\
             [filter:copy]\nuse = egg:swift#copy\n\n\
             [filter:slo]\nuse = egg:swift#slo\n\n\
             [filter:dlo]\nuse = egg:swift#dlo\n",
            common = common(proxy_port),
            key = SWIFT_KEY,
        );
        std::fs::write(d.join("proxy-server.conf"), proxy).expect("proxy conf");

        let mut procs = Vec::new();
        let mut waits = Vec::new();
        let mut mc = Command::new(&memcached);
        let port_arg = memcache_port.to_string();
        mc.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port_arg,
            "-U",
            "0",
            "-u",
            &user,
            "-m",
            "64",
        ]);
        procs.push(Proc::spawn("memcached", &mut mc, &d.join("memcached.log")));
        waits.push((memcache_port, d.join("memcached.log")));
        for (name, bin) in &servers {
            let mut cmd = Command::new(bin);
            cmd.arg(d.join(format!("{name}-server.conf")));
            let log = d.join(format!("{name}.log"));
            procs.push(Proc::spawn(&format!("swift-{name}-server"), &mut cmd, &log));
            let port = match *name {
                "proxy" => proxy_port,
                "account" => account_port,
                "container" => container_port,
                _ => object_port,
            };
            waits.push((port, log));
        }
        let mut node = Self {
            proxy_port,
            memcache_port,
            dir,
            procs,
        };
        // Python servers start slowly on a loaded machine; be patient.
        for (i, (port, log)) in waits.iter().enumerate() {
            wait_for_port(*port, &mut node.procs[i], log, Duration::from_secs(120)).await;
        }
        node
    }

    /// Logs in with tempauth: (storage URL, token).
    pub async fn login(&self) -> (String, String) {
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let resp = http
                .get(self.auth_url())
                .header("X-Auth-User", SWIFT_USER)
                .header("X-Auth-Key", SWIFT_KEY)
                .send()
                .await;
            if let Ok(r) = resp {
                if r.status().is_success() {
                    let h = |n: &str| {
                        r.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    return (h("x-storage-url"), h("x-auth-token"));
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tempauth never answered; logs in {:?}",
                self.dir.path()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates a container (retrying while the servers finish starting).
    pub async fn create_container(&self, name: &str) {
        let (url, token) = self.login().await;
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let r = http
                .put(format!("{url}/{name}"))
                .header("X-Auth-Token", &token)
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => return,
                other => {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "cannot create container {name}: {:?}; logs in {:?}",
                        other.map(|r| r.status()),
                        self.dir.path()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Forgets every tempauth token (they live in memcached), so the next
    /// request with an old token gets a 401.
    pub async fn revoke_tokens(&self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", self.memcache_port))
            .await
            .expect("connect memcached");
        conn.write_all(b"flush_all\r\n").await.expect("flush_all");
        let mut buf = [0u8; 16];
        let n = conn.read(&mut buf).await.expect("memcached reply");
        assert!(buf[..n].starts_with(b"OK"), "flush_all: {:?}", &buf[..n]);
    }

    /// Kills every server.
    pub fn stop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.stop();
        }
    }
}

impl Drop for SwiftNode {
    fn drop(&mut self) {
        self.stop();
    }
}
