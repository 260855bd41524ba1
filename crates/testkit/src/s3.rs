//! `s3s-fs`, a real S3 server over a temp directory, on a loopback port
//! the harness picks, stopped when dropped and restartable on the same port
//! and data (the store-outage tests take it away and bring it back).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use dvr_storage::config::MIN_PART_SIZE;
use dvr_storage::{Secret, StorageConfig};

use crate::process::{find_binary, free_port, tools_bin, wait_for_port, Proc};

/// The access key `s3s-fs` accepts.
pub const S3_ACCESS_KEY: &str = "dvr-test-access";
/// The secret key `s3s-fs` accepts.
pub const S3_SECRET_KEY: &str = "dvr-test-secret-0123456789";

/// A storage config that reaches the S3 API at `endpoint` with these
/// credentials, the smallest part size (so multipart paths run on small
/// objects), and nothing from the environment or `~/.aws`.
pub fn s3_storage_config(endpoint: &str, access_key: &str, secret_key: &str) -> StorageConfig {
    let mut cfg = StorageConfig {
        part_size: MIN_PART_SIZE,
        ..StorageConfig::default()
    };
    cfg.s3.endpoint = Some(endpoint.to_owned());
    cfg.s3.region = Some("us-east-1".into());
    cfg.s3.access_key_id = Some(access_key.into());
    cfg.s3.secret_access_key = Some(Secret::new(secret_key));
    cfg.s3.load_default_credentials = false;
    cfg
}

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
        s3_storage_config(&self.endpoint(), S3_ACCESS_KEY, S3_SECRET_KEY)
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
