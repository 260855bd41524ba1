//! What one stream's ingest needs to know. The YAML layer of the binary maps
//! its stream entries onto this; nothing here is parsed from files.

use dvr_media::{Resume, SegmenterConfig};

use std::sync::Arc;

use crate::input::{HttpOptions, InputUrl, PublishHub};

/// Configuration of one stream's ingest.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// The stream's name, for logs and errors.
    pub name: String,
    /// Inputs in priority order: the first alive one plays.
    pub inputs: Vec<InputUrl>,
    /// How segments are cut (target duration, signal loss …).
    pub segmenter: SegmenterConfig,
    /// Where the tape resumes (next `seq`, end of what is stored).
    pub resume: Resume,
    /// Silence after which an input counts as lost and the next one takes
    /// over; `None` means twice the segmenter's target duration.
    pub source_timeout_ms: Option<i64>,
    /// Largest backlog a standby input keeps, in bytes.
    pub max_backlog_bytes: usize,
    /// Connection behaviour of HTTP inputs.
    pub http: HttpOptions,
    /// The process's publish hub: the stream registers with it while it
    /// runs, and its `publish://` input takes publishes from it.
    pub publish: Option<Arc<PublishHub>>,
    /// The cluster key `m4f://` inputs sign their requests with.
    pub cluster_key: Option<dvr_cluster::ClusterKey>,
}

impl IngestConfig {
    /// Defaults for a stream with these inputs.
    pub fn new(name: impl Into<String>, inputs: Vec<InputUrl>) -> Self {
        IngestConfig {
            name: name.into(),
            inputs,
            segmenter: SegmenterConfig::default(),
            resume: Resume::default(),
            source_timeout_ms: None,
            max_backlog_bytes: 32 << 20,
            http: HttpOptions::default(),
            publish: None,
            cluster_key: None,
        }
    }

    /// The effective source-loss timeout in milliseconds.
    pub fn source_timeout_ms(&self) -> i64 {
        self.source_timeout_ms
            .unwrap_or(2 * self.segmenter.target_duration.as_ms())
            .max(1)
    }
}
