//! `dvr run`: the embedded DVR, every service in one process.
//!
//! Per stream it wires ingest (inputs → segmenter) to the stream's live log
//! on local disk, a recorder copying the log to the archive once per copy
//! interval, and the packager serving the tape over HTTP. Without a config
//! file it runs the demo: one stream looping the bundled clip.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use dvr_archive::store::ArchiveStore;
use dvr_archive::MemoryCache;
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::config::{Config, DvrConfig, InputUrl, StreamConfig};
use dvr_common::{Clock, StreamName, SystemClock, Ticks, UtcMs};
use dvr_ingest::{IngestConfig, IngestTask, SegmentSink};
use dvr_media::{Resume, Segment, SegmenterConfig};
use dvr_packager::{Packager, PackagerConfig, StoreTape, StreamTape};
use dvr_recorder::{RecorderConfig, StreamRecorder};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::archive::open_storage;
use crate::config::RunConfig;

/// Arguments of `dvr run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The YAML configuration; without it, the demo stream runs.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Local directory for live logs (and, for the demo, the archive).
    #[arg(long, value_name = "DIR", default_value = "data")]
    data_dir: PathBuf,
    /// HTTP address, overriding the config's `http.listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

/// The clip the demo loops, built into the binary so `dvr run` works from
/// any directory and in a container image.
const DEMO_CLIP: &[u8] = include_bytes!("../../../testdata/h264_aac_720p.ts");

/// How long a stream without `dvr` keeps its live log.
const LIVE_ONLY_KEEP_MS: i64 = 5 * 60_000;

/// Runs `dvr run` until SIGTERM or Ctrl-C.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

fn load_config(args: &RunArgs) -> anyhow::Result<RunConfig> {
    let env = |key: &str| std::env::var(key).ok();
    match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            Ok(RunConfig::from_yaml_str(
                &text,
                &path.display().to_string(),
                env,
            )?)
        }
        None => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
            let data = std::fs::canonicalize(&args.data_dir)?;
            let clip = match std::env::var("DVR_DEMO_CLIP") {
                Ok(clip) => std::fs::canonicalize(&clip)
                    .with_context(|| format!("the demo clip {clip} is missing"))?,
                Err(_) => write_demo_clip(&data)?,
            };
            let yaml = format!(
                "version: 1\nhttp: {{ listen: \"127.0.0.1:8080\" }}\narchive: file://{}/archive\n\
                 streams:\n  demo:\n    inputs: [ \"file://{}?loop=true\" ]\n    \
                 dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1m }}\n",
                data.display(),
                clip.display()
            );
            Ok(RunConfig::from_yaml_str(
                &yaml,
                "the demo configuration",
                env,
            )?)
        }
    }
}

/// Writes the built-in demo clip into the data directory (once).
fn write_demo_clip(data: &Path) -> anyhow::Result<PathBuf> {
    let path = data.join("demo.ts");
    let current = std::fs::metadata(&path).map(|m| m.len()).ok();
    if current != Some(DEMO_CLIP.len() as u64) {
        std::fs::write(&path, DEMO_CLIP)
            .with_context(|| format!("cannot write the demo clip to {}", path.display()))?;
    }
    Ok(path)
}

/// One running stream.
struct Running {
    ingest: IngestTask,
    recorder: Option<tokio::task::JoinHandle<()>>,
}

async fn serve(args: &RunArgs) -> anyhow::Result<()> {
    let run_config = load_config(args)?;
    let config = &run_config.node;
    let listen = args.listen.unwrap_or(config.http.listen);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Play sessions, as the auth engine records them (the API lists them).
    let sessions: Arc<dyn dvr_bus::Kv> =
        Arc::new(dvr_bus::MemoryKv::new(dvr_proto::SESSIONS_KV_BUCKET));
    let mut packager = Packager::new(PackagerConfig::default(), Arc::clone(&clock));
    if let Some(gate) = auth_gate(config, &clock, &sessions) {
        packager = packager.with_auth(gate);
    }
    let packager = Arc::new(packager);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut archives: HashMap<String, Arc<ArchiveStore>> = HashMap::new();
    let mut running = Vec::new();
    let mut delayed = Vec::new();
    for (name, stream) in &config.streams {
        if let Some(source) = delayed_source(name, stream)? {
            delayed.push((name, source));
            continue;
        }
        let archive = match &stream.dvr {
            Some(dvr) => {
                Some(open_archive(&mut archives, name, stream, dvr, &run_config, &clock).await?)
            }
            None => None,
        };
        running.push(
            start_stream(
                name,
                stream,
                archive,
                &args.data_dir,
                &packager,
                &clock,
                &stop_rx,
            )
            .await?,
        );
    }
    for (name, (source, delay_ms)) in delayed {
        packager
            .add_delayed(name.as_str(), source.as_str(), delay_ms)
            .with_context(|| format!("stream {name}: its source {source} is not running"))?;
        info!(stream = %name, source = %source, delay_s = delay_ms / 1000, "delayed channel");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    print_urls(listener.local_addr().unwrap_or(listen), config, clock.now());
    // The peer address is the client's for play authorization.
    let app = Arc::clone(&packager)
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
    server.await.context("HTTP server failed")?;

    info!("shutting down: closing the open segments and copying them to the archive");
    let mut recorders = Vec::new();
    for stream in running {
        if let Err(e) = stream.ingest.stop().await {
            warn!(error = %e, "ingest stopped with an error");
        }
        recorders.extend(stream.recorder);
    }
    let _ = stop_tx.send(true);
    for recorder in recorders {
        let _ = recorder.await;
    }
    Ok(())
}

/// Play authorization in process, when any stream has a policy: the
/// engine answers the packager directly and records sessions in
/// `sessions`.
fn auth_gate(
    config: &Config,
    clock: &Arc<dyn Clock>,
    sessions: &Arc<dyn dvr_bus::Kv>,
) -> Option<Arc<dvr_packager::Gate>> {
    let protected = config
        .streams
        .keys()
        .filter(|s| config.auth_of(s).is_some())
        .count();
    if protected == 0 {
        return None;
    }
    let engine = dvr_auth::Engine::new(config, Arc::clone(clock), Some(Arc::clone(sessions)));
    info!(streams = protected, "play authorization on");
    Some(Arc::new(dvr_packager::Gate::new(
        Arc::new(engine),
        config.http.trust_forwarded_for,
    )))
}

async fn open_archive(
    archives: &mut HashMap<String, Arc<ArchiveStore>>,
    name: &StreamName,
    stream: &StreamConfig,
    dvr: &DvrConfig,
    config: &RunConfig,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<Arc<ArchiveStore>> {
    let store = match archives.get(&dvr.root) {
        Some(store) => Arc::clone(store),
        None => {
            let storage = open_storage(name, &dvr.root, &config.storage).await?;
            let memory = MemoryCache::new(config.node.packager.memory_cache_bytes);
            let store = Arc::new(ArchiveStore::with_memory_cache(storage, memory));
            archives.insert(dvr.root.clone(), Arc::clone(&store));
            store
        }
    };
    let report = store
        .load(name)
        .await
        .map_err(|e| anyhow!("stream {name}: cannot load its archive: {e}"))?;
    info!(stream = %name, chunks = report.chunks, orphans = report.orphans.len(), bad = report.bad.len(), "archive loaded");
    if let Some(cache) = &stream.cache {
        store
            .enable_disk_cache(name, cache, Arc::clone(clock))
            .with_context(|| format!("stream {name}: cannot open its cache at {}", cache.path))?;
        info!(stream = %name, path = %cache.path, "disk cache enabled");
    }
    Ok(store)
}

#[allow(clippy::too_many_arguments)]
async fn start_stream(
    name: &StreamName,
    stream: &StreamConfig,
    archive: Option<Arc<ArchiveStore>>,
    data_dir: &Path,
    packager: &Arc<Packager>,
    clock: &Arc<dyn Clock>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    let log_dir = data_dir.join("livelog").join(name.as_str());
    let log = Arc::new(
        SegmentLog::open(&log_dir, SegmentLogOptions::default())
            .with_context(|| format!("stream {name}: cannot open its live log"))?,
    );
    let inputs = stream.inputs.clone();
    let segment_ms = stream.dvr.as_ref().map_or(2000, |d| d.segment_duration_ms);
    let mut ingest = IngestConfig::new(name.to_string(), inputs);
    ingest.segmenter = SegmenterConfig::with_target(Ticks::from_ms(segment_ms));
    ingest.resume = resume_point(&log, archive.as_deref(), name);
    let task = IngestTask::spawn(
        ingest,
        Arc::clone(clock),
        LogSink {
            log: Arc::clone(&log),
        },
    );

    let archived = archive.as_ref().map(|store| {
        Arc::new(StoreTape::new(name.clone(), Arc::clone(store)))
            as Arc<dyn dvr_packager::ArchivedTape>
    });
    packager.add_stream(StreamTape::new(
        name.to_string(),
        Arc::clone(&log),
        archived,
    ));

    let recorder = match (archive, &stream.dvr) {
        (Some(store), Some(dvr)) => {
            let mut config = RecorderConfig::with_copy_interval(dvr.copy_interval_ms);
            config.retention = dvr.into();
            let recorder = StreamRecorder::new(name.clone(), log, store, Arc::clone(clock), config);
            Some(tokio::spawn(recorder.run(stop.clone())))
        }
        _ => {
            tokio::spawn(trim_live_only(log, Arc::clone(clock), stop.clone()));
            None
        }
    };
    Ok(Running {
        ingest: task,
        recorder,
    })
}

/// The source and delay of a delayed channel (`timeshift://OTHER/N`), which
/// ingests nothing and records nothing: it plays OTHER's tape N seconds
/// behind live.
fn delayed_source(
    name: &StreamName,
    stream: &StreamConfig,
) -> anyhow::Result<Option<(StreamName, i64)>> {
    let shifts: Vec<_> = stream
        .inputs
        .iter()
        .filter_map(|input| match input {
            InputUrl::Timeshift { source, delay_ms } => Some((source.clone(), *delay_ms)),
            _ => None,
        })
        .collect();
    match (shifts.as_slice(), stream.inputs.len(), &stream.dvr) {
        ([], _, _) => Ok(None),
        ([one], 1, None) => Ok(Some(one.clone())),
        ([_], 1, Some(_)) => bail!(
            "stream {name}: a delayed channel (timeshift://) plays its source's archive; remove its dvr"
        ),
        _ => bail!(
            "stream {name}: a delayed channel (timeshift://) has exactly one input, its source"
        ),
    }
}

/// Where the tape continues: after the newest segment in the live log or
/// the archive, as a discontinuity.
fn resume_point(log: &SegmentLog, archive: Option<&ArchiveStore>, name: &StreamName) -> Resume {
    let logged = log.newest();
    let archived_seq = archive.and_then(|a| a.last_seq(name));
    let archived_end = archive.and_then(|a| a.extent(name)).map(|r| r.to);
    let last_seq = logged.map(|m| m.seq).max(archived_seq);
    let tape_end = logged.map(|m| m.utc_end()).max(archived_end);
    Resume {
        next_seq: last_seq.map_or(0, |s| s + 1),
        tape_end,
        discontinuity: last_seq.is_some(),
    }
}

/// Appends ingest's segments to the live log.
#[derive(Debug)]
struct LogSink {
    log: Arc<SegmentLog>,
}

impl SegmentSink for LogSink {
    type Error = dvr_bus::BusError;

    async fn append(&mut self, segment: Segment) -> Result<(), Self::Error> {
        let log = Arc::clone(&self.log);
        match tokio::task::spawn_blocking(move || log.append(&segment)).await {
            Ok(result) => result,
            Err(e) => Err(dvr_bus::BusError::Io {
                op: "append",
                path: self.log.dir().to_path_buf(),
                source: std::io::Error::other(e),
            }),
        }
    }
}

/// Keeps the live log of a stream without DVR to a few minutes.
async fn trim_live_only(
    log: Arc<SegmentLog>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let before = UtcMs(clock.now().0 - LIVE_ONLY_KEEP_MS);
                let log = Arc::clone(&log);
                let _ = tokio::task::spawn_blocking(move || log.trim(before, u64::MAX)).await;
            }
            _ = stop.changed() => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGTERM; Ctrl-C only");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

fn print_urls(addr: SocketAddr, config: &Config, now: UtcMs) {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    };
    let hour_ago = now.as_secs() - 3600;
    println!("dvr is running on http://{host}/ (Ctrl-C to stop)");
    for name in config.streams.keys() {
        println!("  {name}:");
        println!("    live          http://{host}/{name}/index.m3u8");
        println!(
            "    start-over    http://{host}/{name}/index-{}-now.m3u8",
            now.as_secs()
        );
        println!("    last hour     http://{host}/{name}/archive-{hour_ago}-3600.m3u8");
        println!("    download      http://{host}/{name}/archive-{hour_ago}-3600.ts");
        println!("    status        http://{host}/{name}/recording_status.json?from={hour_ago}&request=ranges");
    }
    println!(
        "try: ffplay http://{host}/{}/index.m3u8",
        config
            .streams
            .keys()
            .next()
            .map_or("STREAM", StreamName::as_str)
    );
}
