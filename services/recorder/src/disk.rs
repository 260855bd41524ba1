//! How full the file system under a `file://` archive is, for retention's
//! disk-percentage limit (`90%`).
//!
//! Measured as `df` shows it: used = blocks − free, and the percentage is
//! taken of used + available (what an unprivileged writer can still fill),
//! not of the raw size, so the root-reserved blocks count as unusable. The
//! whole file system counts, whatever else writes to it: the limit keeps the
//! disk from filling, which is what an operator sets it for.

use std::path::{Path, PathBuf};

use dvr_archive::DiskUsage;

/// The file system holding one archive root.
#[derive(Clone, Debug)]
pub struct DiskMeter {
    path: PathBuf,
}

impl DiskMeter {
    /// Measures the file system that holds `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory measured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file system's use now.
    pub fn measure(&self) -> std::io::Result<DiskUsage> {
        let st = rustix::fs::statvfs(&self.path)?;
        let block = st.f_frsize;
        let used = st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(block);
        let available = st.f_bavail.saturating_mul(block);
        Ok(DiskUsage {
            used_bytes: used,
            total_bytes: used.saturating_add(available),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_measures_and_a_missing_one_names_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskMeter::new(dir.path()).measure().unwrap();
        assert!(
            disk.total_bytes > 0 && disk.used_bytes <= disk.total_bytes,
            "{disk:?}"
        );
        let e = DiskMeter::new(dir.path().join("missing"))
            .measure()
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
