//! A one-node OpenStack Swift under a temp directory: memcached and the
//! account, container, object and proxy servers (tempauth, s3api, slo,
//! bulk), on loopback ports the harness picks, stopped when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dvr_storage::config::MIN_PART_SIZE;
use dvr_storage::{Secret, StorageConfig};

use crate::process::{find_binary, free_ports, wait_for_port, Proc, INSTALL_HINT};
use crate::s3::s3_storage_config;

/// The tempauth user of the one-node Swift (also its S3 access key).
pub const SWIFT_USER: &str = "test:tester";
/// The tempauth key of [`SWIFT_USER`] (also its S3 secret key).
pub const SWIFT_KEY: &str = "swift-test-key-5e81c0";

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

    /// A storage config that reaches this node through its S3 API (the
    /// `s3api` middleware), the tempauth user and key as S3 credentials.
    pub fn s3api_storage_config(&self) -> StorageConfig {
        s3_storage_config(&self.endpoint(), SWIFT_USER, SWIFT_KEY)
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
