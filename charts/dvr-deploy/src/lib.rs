//! `dvr deploy render`: the DVR's Kubernetes manifests from one values file.
//!
//! [`values`] reads and checks the file (unknown keys refused with their
//! line, the embedded stream config parsed by the DVR's own parser);
//! [`render`] builds every object as a typed k8s-openapi struct and writes
//! it with serde-saphyr. There is no Helm and no text template: what comes
//! out is what the Kubernetes types can express, and tests check it against
//! the API schemas with `kubernetes-validate --strict`.

pub mod render;
pub mod values;

use std::path::{Path, PathBuf};

pub use render::{render, Manifest, RenderError, HEADER};
pub use values::{Values, ValuesError};

/// Rendering a values file into a directory failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The values file cannot be read or written around.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Which file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The values are wrong.
    #[error(transparent)]
    Values(#[from] ValuesError),
    /// An object could not be written.
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// Reads `values`, renders it and writes every manifest into `out`,
/// replacing the files a previous render left there (files without the
/// rendered header, e.g. alert rules, are left alone). Returns the paths
/// written.
pub fn render_to_dir(values: &Path, out: &Path) -> Result<Vec<PathBuf>, DeployError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| DeployError::Io { what, path, source }
    };
    let text = std::fs::read_to_string(values).map_err(io("cannot read", values))?;
    let values = Values::from_yaml_str(&text, &values.display().to_string())?;
    let manifests = render(&values)?;
    std::fs::create_dir_all(out).map_err(io("cannot create", out))?;
    for stale in rendered_files(out).map_err(io("cannot list", out))? {
        let name = stale.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !manifests.iter().any(|m| m.file == name) {
            std::fs::remove_file(&stale).map_err(io("cannot remove", &stale))?;
        }
    }
    let mut written = Vec::new();
    for m in &manifests {
        let path = out.join(&m.file);
        std::fs::write(&path, &m.yaml).map_err(io("cannot write", &path))?;
        written.push(path);
    }
    Ok(written)
}

/// The files in `dir` that a render wrote (they start with [`HEADER`]).
pub fn rendered_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml")
            && std::fs::read_to_string(&path).is_ok_and(|t| t.starts_with(HEADER))
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
