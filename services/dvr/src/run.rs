//! `dvr run`: the DVR's services, all in this process (embedded) or the
//! ones `--services` names over NATS (distributed).
//!
//! It loads the config, seeds the streams bucket from it, and hands the
//! rest to the [`Supervisor`], which runs ingest, recorder and packager
//! work for the streams as the bucket and the leases say; the HTTP port
//! serves health, metrics, and the packager's and the API's routes when
//! this process runs them. Without a config file it runs the demo: one
//! stream looping the bundled clip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::Router;
use bytes::Bytes;
use clap::Args;
use dvr_archive::ArchiveRegistry;
use dvr_bus::{Kv, LiveLogConfig, NatsConfig, NatsCredentials};
use dvr_common::config::MAX_COPY_INTERVAL_MS;
use dvr_common::config::{Config, InputUrl, StreamConfig};
use dvr_common::{Clock, StreamName, SystemClock, UtcMs};
use dvr_ingest::input::publish::rtmp::RtmpListener;
use dvr_packager::{Packager, PackagerConfig};
use dvr_proto::{
    stream_config_key, EXPORTS_KV_BUCKET, LOCKS_KV_BUCKET, RUNTIME_KV_BUCKET, SESSIONS_KV_BUCKET,
    STREAMS_KV_BUCKET,
};
use tokio::sync::watch;
use tower::Layer;
use tracing::{info, warn};

use crate::config::RunConfig;
use crate::supervisor::{default_node_id, Roles, Supervisor};
use dvr_bus::Node;

/// Arguments of `dvr run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The YAML configuration; without it, the demo stream runs.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Local directory for live logs (and, for the demo, the archive).
    #[arg(long, value_name = "DIR", default_value = "data")]
    data_dir: PathBuf,
    /// HTTP address, overriding the config's `http.listen` (so several
    /// processes can share one config file).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// NATS server URL(s): distributed mode, the live logs, settings and
    /// leases on JetStream. Without it every service runs in this process.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// The services this process runs (with --nats): any of ingest,
    /// recorder, packager, api, auth, comma-separated, or all.
    #[arg(long, value_name = "LIST")]
    services: Option<String>,
    /// This process's id among the replicas (default: host name and pid).
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Copies of the live log and buckets in the NATS cluster (3 in
    /// production).
    #[arg(long, value_name = "N", default_value_t = 1)]
    nats_replicas: usize,
    /// How long an archive outage the NATS live log rides out (with
    /// --nats): it keeps a segment for the longest copy interval (1 h) plus
    /// this, then drops it archived or not.
    #[arg(long, value_name = "DURATION", default_value = "4h", value_parser = parse_outage)]
    hot_tier_outage: std::time::Duration,
}

/// A duration of at least one minute (`4h`, `90m`).
fn parse_outage(s: &str) -> Result<std::time::Duration, String> {
    let ms = dvr_common::time::parse_duration_ms(s)
        .map_err(|e| format!("duration {s:?}: {}", e.reason()))?;
    if ms < 60_000 {
        return Err(format!(
            "{s:?} is under a minute: the live log would drop segments before an upload retry"
        ));
    }
    Ok(std::time::Duration::from_millis(ms.unsigned_abs()))
}

/// The clip the demo loops, built into the binary so `dvr run` works from
/// any directory and in a container image.
const DEMO_CLIP: &[u8] = include_bytes!("../../../testdata/h264_aac_720p.ts");

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

async fn serve(args: &RunArgs) -> anyhow::Result<()> {
    let run_config = Arc::new(load_config(args)?);
    let config = &run_config.node;
    for (name, stream) in &config.streams {
        check_delayed(name, stream)?;
    }
    let listen = args.listen.unwrap_or(config.http.listen);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let node_id = args.node_id.clone().unwrap_or_else(default_node_id);
    let (node, roles) = match &args.nats {
        Some(url) => {
            let roles = Roles::parse(args.services.as_deref().unwrap_or("all"))?;
            let mut nats = NatsConfig::new(url);
            // Secrets come from the environment only (a mounted Secret),
            // never from arguments that `ps` shows.
            nats.credentials = NatsCredentials::from_env(url, |name| std::env::var(name).ok())
                .map_err(anyhow::Error::msg)?;
            // The longest copy interval any stream may get (the API can
            // add one later), plus the outage budget.
            nats.live = LiveLogConfig::for_copy_interval(
                std::time::Duration::from_millis(MAX_COPY_INTERVAL_MS.unsigned_abs()),
                args.hot_tier_outage,
                args.nats_replicas,
            );
            nats.kv_replicas = args.nats_replicas;
            (Node::nats(node_id, nats).await?, roles)
        }
        None => {
            if args.services.is_some() {
                bail!("--services needs --nats: without NATS every service runs in this process");
            }
            (Node::embedded(node_id, args.data_dir.clone()), Roles::ALL)
        }
    };
    let node = Arc::new(node);
    // The auth engine reads `${VAR}` in keys and tokens from this process's
    // environment; one it cannot read is a startup error, not a stream
    // that quietly refuses every viewer.
    if roles.auth {
        if let Some(problem) = dvr_auth::unreadable_secrets(config).first() {
            bail!("{problem}");
        }
    }
    info!(node = %node.id, services = ?roles.names(), distributed = node.is_distributed(), "starting");

    // The streams bucket: the config file's streams seed it (on NATS only
    // where absent, so what the API changed survives a restart), from any
    // process but a packager-only one: the internet-facing packager may
    // not write settings on a closed bus.
    let streams_kv = node.kv(STREAMS_KV_BUCKET).await?;
    let writes_settings =
        !node.is_distributed() || roles.ingest || roles.recorder || roles.api || roles.auth;
    if writes_settings {
        seed_streams(&streams_kv, config, node.is_distributed()).await?;
    }
    let follows_sources = writes_settings && !config.sources.is_empty();

    let sessions = node.kv(SESSIONS_KV_BUCKET).await?;
    // Play authorization: policies follow the streams bucket (the
    // supervisor hands every change to each authorizer).
    let mut authorizers: Vec<Arc<dyn dvr_bus::Authorizer>> = Vec::new();
    let packager_config = PackagerConfig {
        max_paced_streams: config.packager.max_paced_streams,
        max_paced_streams_per_client: config.packager.max_paced_streams_per_client,
        previews: dvr_packager::config::PreviewConfig {
            decoder: config.packager.preview_decoder.clone().into(),
            workers: config.packager.preview_workers,
            queue: config.packager.preview_queue,
            ..Default::default()
        },
        ..PackagerConfig::default()
    };
    let mut packager = Packager::new(packager_config, Arc::clone(&clock));
    // Origin-to-origin requests: the packager's segment feed, the API's
    // stream list, the ingest's m4f:// inputs, the sources' lists.
    let cluster_key = match &config.cluster_key {
        Some(key) if roles.packager || roles.api || roles.ingest || follows_sources => {
            Some(cluster_key(key)?)
        }
        _ => None,
    };
    // `sources:` become streams in the streams bucket, which every role
    // follows (the same lists give the same streams, so processes that
    // write settings may all do it).
    if let (true, Some(key)) = (follows_sources, &cluster_key) {
        let follower = dvr_cluster::SourcesFollower::new(
            config.sources.clone(),
            dvr_cluster::FeedClient::new(key.clone()).map_err(anyhow::Error::msg)?,
            Arc::clone(&streams_kv),
            node.kv(dvr_proto::SOURCES_KV_BUCKET).await?,
            Arc::clone(&clock),
        );
        tokio::spawn(follower.run());
    }
    let cluster = match &cluster_key {
        Some(key) if roles.packager || roles.api => Some(dvr_cluster::Verifier::new(
            key.clone(),
            dvr_cluster::NonceGuard::new(node.kv(dvr_proto::CLUSTER_NONCES_KV_BUCKET).await?),
        )),
        _ => None,
    };
    if let (Some(verifier), true) = (&cluster, roles.packager) {
        packager = packager.with_cluster(verifier.clone());
    }
    if roles.packager {
        packager = packager.with_runtime(node.kv(RUNTIME_KV_BUCKET).await?);
    }
    let mut gate = None;
    let mut play_authorizer = None;
    if roles.packager {
        let authorizer = authorizer(config, &clock, &node, &sessions);
        authorizers.push(Arc::clone(&authorizer));
        play_authorizer = Some(Arc::clone(&authorizer));
        let g = Arc::new(dvr_packager::Gate::new(authorizer));
        packager = packager.with_auth(Arc::clone(&g));
        gate = Some(g);
    }
    // RTMP publishes: one listener for the process, in front of the
    // streams this process ingests; a publish is authorised like a play,
    // by the same authorizer.
    let mut _rtmp_listener = None;
    let mut publish_hub = None;
    if let (Some(rtmp), true) = (config.rtmp, roles.ingest) {
        let publish_auth = match &play_authorizer {
            Some(a) => Arc::clone(a),
            None => {
                let a = authorizer(config, &clock, &node, &sessions);
                authorizers.push(Arc::clone(&a));
                a
            }
        };
        let hub = dvr_ingest::input::PublishHub::new(Some(publish_auth));
        let listener = RtmpListener::bind(rtmp.listen, Arc::clone(&hub))
            .await
            .with_context(|| format!("cannot listen for RTMP on {}", rtmp.listen))?;
        println!(
            "dvr takes RTMP publishes on rtmp://{}/STREAM",
            listener.local_addr()
        );
        _rtmp_listener = Some(listener);
        publish_hub = Some(hub);
    }
    if roles.auth && node.is_distributed() {
        let engine = dvr_auth::Engine::new(config, Arc::clone(&clock), Some(Arc::clone(&sessions)));
        authorizers.push(Arc::new(engine.clone()));
        let responder = node.responder();
        tokio::spawn(async move {
            if let Err(e) = dvr_auth::serve(engine, responder.as_ref()).await {
                warn!(error = %e, "the auth service stopped");
            }
        });
    }
    let packager = Arc::new(packager);
    // One store per archive root for the whole process: the recorder, the
    // packager and the API see the same catalog and locks.
    let registry = Arc::new(ArchiveRegistry::new(
        run_config.storage.clone(),
        run_config.node.packager.memory_cache_bytes,
    ));
    let supervisor = Supervisor::new(
        Arc::clone(&node),
        roles,
        Arc::clone(&run_config),
        Arc::clone(&clock),
        Arc::clone(&packager),
        Arc::clone(&registry),
        authorizers,
        dvr_ingest::IngestContext {
            node: Arc::clone(&node),
            registry: Arc::clone(&registry),
            clock: Arc::clone(&clock),
            publish: publish_hub,
            cluster_key,
        },
    );
    // A store that cannot be reached is a startup error, not a stream that
    // quietly never records.
    if roles.recorder || roles.packager {
        supervisor.open_archives(&config.streams).await?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let supervised = tokio::spawn(Arc::clone(&supervisor).run(Arc::clone(&streams_kv), stop_rx));

    let mut app = crate::health::router(Arc::clone(&supervisor));
    let exports_kv = node.kv(EXPORTS_KV_BUCKET).await?;
    if roles.packager {
        app = app.merge(Arc::clone(&packager).router());
        // Saved exports: any packager replica writes the queued jobs.
        let runner = dvr_packager::exports::ExportRunner::new(
            Arc::clone(&packager),
            Arc::clone(&exports_kv),
            Arc::clone(&streams_kv),
            Arc::clone(&registry),
            Arc::clone(&clock),
            &node.id,
            std::time::Duration::from_millis(
                u64::try_from(run_config.node.packager.export_retention_ms).unwrap_or(u64::MAX),
            ),
        );
        tokio::spawn(runner.run());
    }
    if roles.packager || roles.api {
        // The operator page and the player page's scripts (embed.html
        // itself is the packager's, behind its playback gate).
        app = app.merge(dvr_web::router());
    }
    if roles.api {
        // The API's secrets are read here, by the process that runs it.
        let api = run_config.api(|k| std::env::var(k).ok())?;
        app = app.merge(crate::api::router(
            &run_config,
            api,
            crate::api::ApiBuckets {
                streams: Arc::clone(&streams_kv),
                sessions,
                locks: node.kv(LOCKS_KV_BUCKET).await?,
                runtime: node.kv(RUNTIME_KV_BUCKET).await?,
                exports: Arc::clone(&exports_kv),
            },
            Arc::clone(&node),
            registry,
            &clock,
            cluster,
        )?);
        // The seeds' `POST /STREAM/save-mp4-FROM-DUR?file=` is the API's
        // export: rewritten before routing, so it meets the API's checks.
        app = Router::new()
            .fallback_service(axum::middleware::from_fn(dvr_api::save_mp4_alias).layer(app));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    if roles.packager {
        print_urls(
            listener.local_addr().unwrap_or(listen),
            config,
            clock.now(),
            roles.api,
        );
    } else {
        println!(
            "dvr {} is running on http://{}/ (/healthz, /readyz, /status, /metrics)",
            roles.names().join(","),
            listener.local_addr().unwrap_or(listen)
        );
    }
    // Every family listed from the first scrape, before anything happened.
    dvr_ingest::metrics::register();
    dvr_recorder::metrics::register();
    dvr_packager::metrics::register();
    dvr_archive::metrics::register();
    dvr_auth::metrics::register();
    dvr_bus::metrics::register();
    dvr_edge::metrics::register();
    // Every route behind the edge: the client named through the trusted
    // proxies, requests and connections capped, slow clients timed out.
    let edge = dvr_edge::Edge::new(&config.http);
    let app = edge.wrap(app.merge(dvr_telemetry::metrics::router()));
    dvr_edge::serve(listener, app, edge, shutdown_signal())
        .await
        .context("HTTP server failed")?;
    // The bytes the last seconds of playback served still count.
    if let Some(gate) = gate {
        gate.report_usage().await;
    }

    let _ = stop_tx.send(true);
    let _ = supervised.await;
    Ok(())
}

/// The cluster key, read from this process's environment where it says
/// `${VAR}`; the error names `cluster_key`, never the key.
fn cluster_key(key: &dvr_common::config::Secret) -> anyhow::Result<dvr_cluster::ClusterKey> {
    let text = key
        .expanded(|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("cluster_key: {e}"))?;
    dvr_cluster::ClusterKey::new(text.expose()).map_err(anyhow::Error::msg)
}

/// The packager's play authorization: the engine in this process
/// (embedded), or the auth service asked over the bus (distributed). A
/// stream without a policy passes at the cost of one set lookup.
fn authorizer(
    config: &Config,
    clock: &Arc<dyn Clock>,
    node: &Node,
    sessions: &Arc<dyn Kv>,
) -> Arc<dyn dvr_bus::Authorizer> {
    if node.is_distributed() {
        Arc::new(dvr_bus::BusAuthorizer::new(
            config,
            node.requester(),
            AUTH_TIMEOUT,
        ))
    } else {
        Arc::new(dvr_auth::Engine::new(
            config,
            Arc::clone(clock),
            Some(Arc::clone(sessions)),
        ))
    }
}

/// How long the packager waits for the auth service's answer.
const AUTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Puts the config file's streams into the bucket: all of them embedded
/// (the bucket starts empty), only the absent ones on NATS.
async fn seed_streams(kv: &Arc<dyn Kv>, config: &Config, only_absent: bool) -> anyhow::Result<()> {
    for (name, stream) in &config.streams {
        let value =
            Bytes::from(serde_json::to_vec(stream).context("encoding a stream's settings")?);
        let key = stream_config_key(name);
        let result = if only_absent {
            match kv.create(&key, value).await {
                Err(dvr_bus::BusError::KvConflict { .. }) => Ok(0),
                other => other,
            }
        } else {
            kv.put(&key, value).await
        };
        result.with_context(|| format!("stream {name}: cannot store its settings"))?;
    }
    Ok(())
}

/// A delayed channel (`timeshift://OTHER/N`) ingests and records nothing:
/// it plays OTHER's tape N seconds behind live, so it has exactly that one
/// input and no `dvr`.
fn check_delayed(name: &StreamName, stream: &StreamConfig) -> anyhow::Result<()> {
    let shifts = stream
        .inputs
        .iter()
        .filter(|input| matches!(input, InputUrl::Timeshift { .. }))
        .count();
    match (shifts, stream.inputs.len(), &stream.dvr) {
        (0, _, _) | (1, 1, None) => Ok(()),
        (1, 1, Some(_)) => bail!(
            "stream {name}: a delayed channel (timeshift://) plays its source's archive; remove its dvr"
        ),
        _ => bail!(
            "stream {name}: a delayed channel (timeshift://) has exactly one input, its source"
        ),
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

/// The URLs to open; the operator page only where this process runs the
/// API it calls.
fn print_urls(addr: SocketAddr, config: &Config, now: UtcMs, api: bool) {
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
        println!("    player        http://{host}/{name}/embed.html?dvr=true");
    }
    if api {
        println!("operator page: http://{host}/admin/ (needs an api.tokens token)");
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
