//! The JPEG decoder: `dvr-preview-decoder` processes (libavcodec), one per
//! thread of a small pool, each thread under `SCHED_IDLE`.
//!
//! **Why long-lived processes, started by threads of their own.** Most of
//! what a picture cost when each was an `ffmpeg` process was not the
//! decode: starting Debian's `ffmpeg` (some 200 libraries) takes ~50 ms of
//! CPU in the dynamic loader and page faults, against ~7 ms to decode
//! and encode a 720p picture. Worse, process start and exit are kernel
//! work, which a kernel built without kernel preemption (`PREEMPT_NONE`,
//! the server default) does not interrupt for a waking thread, so they
//! delayed playback's threads even under `SCHED_IDLE`: at 30 pictures a
//! second, the p99 of playlists served at a steady 3,500 a second went
//! from 0.12 to 1.24 ms (bench/README.md). So each thread keeps one
//! `dvr-preview-decoder` (protocol in its module doc) and hands it
//! picture after picture; it is started again only after it fails. Each
//! thread sets itself to `SCHED_IDLE` once, and the helper it starts
//! inherits that policy, so the decodes run on CPU time nothing else
//! wants, user-space work that playback's threads preempt at once.
//!
//! **Bounds.** At most `workers` helpers decode at once, one picture each
//! with one thread, for at most `timeout` (then the helper is killed and
//! the next job starts another); at most `queue` jobs wait, counted until
//! they leave the pool (so the channel itself needs no bound), and past
//! that the answer is a `503`. A job whose requester has gone is dropped
//! before it is decoded.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use thread_priority::{
    set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadPriority,
    ThreadSchedulePolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;

use crate::config::PreviewConfig;
use crate::error::PackagerError;

/// The most bytes of JPEG taken from the decoder for one picture (a
/// 1920-wide picture is well under 1 MiB); past it the decoder is
/// stopped as broken.
const MAX_JPEG_BYTES: usize = 16 << 20;

/// Where the decoder is: a configured path as it is; the default name
/// (no `/`) next to the running executable when there (cargo builds the
/// two side by side, and `make build` builds both), or beside the
/// directory of a cargo test's executable (`deps/`), else on `PATH`.
fn program(configured: &Path) -> PathBuf {
    if configured.components().count() == 1 {
        let exe = std::env::current_exe().ok();
        let dir = exe.as_deref().and_then(Path::parent);
        let cargo_deps = dir
            .filter(|d| d.file_name().is_some_and(|n| n == "deps"))
            .and_then(Path::parent);
        for dir in dir.into_iter().chain(cargo_deps) {
            let beside = dir.join(configured);
            if beside.is_file() {
                return beside;
            }
        }
    }
    configured.to_owned()
}

/// One picture to make: a one-frame MP4, the width asked, where to answer,
/// and its place in the pool's count, given back when the job is dropped
/// (done, or skipped because its requester left).
struct Job {
    mp4: Bytes,
    width: Option<u32>,
    reply: oneshot::Sender<Result<Bytes, PackagerError>>,
    _slot: Slot,
}

/// A job counted in [`Decoder::admitted`].
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The decoding threads (started at the first picture asked for) and the
/// count of jobs running or waiting for one.
#[derive(Debug)]
pub(super) struct Decoder {
    program: PathBuf,
    workers: usize,
    queue: usize,
    timeout: Duration,
    admitted: Arc<AtomicUsize>,
    jobs: OnceLock<mpsc::Sender<Job>>,
}

impl Decoder {
    pub(super) fn new(config: &PreviewConfig) -> Self {
        Self {
            program: program(&config.decoder),
            workers: config.workers.max(1),
            queue: config.queue,
            timeout: config.timeout,
            admitted: Arc::default(),
            jobs: OnceLock::new(),
        }
    }

    fn limit(&self) -> usize {
        self.workers + self.queue
    }

    fn busy(&self) -> PackagerError {
        PackagerError::Busy(format!(
            "all {} preview workers are busy and {} requests wait: try again shortly",
            self.workers, self.queue
        ))
    }

    /// The `503` while every worker and queue place is taken.
    pub(super) fn refuse_when_full(&self) -> Result<(), PackagerError> {
        if self.admitted.load(Ordering::Acquire) >= self.limit() {
            return Err(self.busy());
        }
        Ok(())
    }

    /// `mp4` (one frame) decoded and encoded as JPEG, `width` wide, by the
    /// next free thread, or a `503` when `workers` run and `queue` wait.
    /// A job keeps its place until it leaves the pool, so requesters that
    /// give up cannot pile jobs up behind a slow decode.
    pub(super) async fn jpeg(
        &self,
        mp4: Bytes,
        width: Option<u32>,
    ) -> Result<Bytes, PackagerError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.limit() {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(self.busy());
        }
        let slot = Slot(Arc::clone(&self.admitted));
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.get_or_init(|| self.start()).send(Job {
            mp4,
            width,
            reply,
            _slot: slot,
        });
        if sent.is_err() {
            return Err(internal("the preview decoder threads have stopped"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(internal("the preview decoder thread stopped mid-job")))
    }

    /// Starts the threads; they end when the sender is dropped (with the
    /// packager). When none starts, the receiver goes with them, and every
    /// job is an error at once rather than a wait.
    fn start(&self) -> mpsc::Sender<Job> {
        let (send, receive) = mpsc::channel::<Job>();
        let receive = Arc::new(Mutex::new(receive));
        for n in 0..self.workers {
            let receive = Arc::clone(&receive);
            let run = Run {
                program: self.program.clone(),
                timeout: self.timeout,
                helper: None,
            };
            let started = std::thread::Builder::new()
                .name(format!("preview-decoder-{n}"))
                .spawn(move || run.serve(&receive));
            if let Err(e) = started {
                tracing::error!(error = %e, "a preview decoder thread could not start");
            }
        }
        send
    }
}

/// What a decoding thread needs, and its `dvr-preview-decoder` while one
/// runs.
struct Run {
    program: PathBuf,
    timeout: Duration,
    helper: Option<Helper>,
}

/// A running `dvr-preview-decoder` and its pipes.
struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl Run {
    fn serve(mut self, jobs: &Mutex<mpsc::Receiver<Job>>) {
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) =
            set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
        {
            tracing::warn!(
                error = ?e,
                "a preview decoder thread could not set SCHED_IDLE: its decoder runs at normal priority"
            );
        }
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "a preview decoder thread has no runtime");
                return;
            }
        };
        loop {
            let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
            let Ok(Job {
                mp4,
                width,
                reply,
                _slot: slot,
            }) = job
            else {
                // The packager is gone.
                if let Some(helper) = self.helper.take() {
                    runtime.block_on(helper.end());
                }
                return;
            };
            if reply.is_closed() {
                continue; // nobody waits for it any more
            }
            let made = runtime.block_on(self.picture(&mp4, width));
            // The place first: a requester that has its answer may ask
            // again at once, and must find it free.
            drop(slot);
            let _ = reply.send(made);
        }
    }

    /// One picture from the helper, started first if none runs; a helper
    /// that fails or overruns `timeout` is killed, and the next job starts
    /// another.
    async fn picture(&mut self, mp4: &[u8], width: Option<u32>) -> Result<Bytes, PackagerError> {
        let helper = match self.helper.take() {
            Some(helper) => helper,
            None => self.start()?,
        };
        match tokio::time::timeout(self.timeout, ask(helper, mp4, width)).await {
            Ok(Ok((helper, answer))) => {
                self.helper = Some(helper);
                answer
            }
            Ok(Err(broken)) => Err(broken.into_error(&self.program).await),
            // Dropping the future dropped the child, which kills it.
            Err(_) => Err(PackagerError::DecoderTimeout(format!(
                "the preview decoder took longer than {} ms and was stopped",
                self.timeout.as_millis()
            ))),
        }
    }

    fn start(&self) -> Result<Helper, PackagerError> {
        let mut child = Command::new(&self.program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    no_decoder(&self.program, &e.to_string())
                }
                _ => internal(format!("the preview decoder did not start: {e}")),
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(internal("the preview decoder has no pipes"));
        };
        Ok(Helper {
            child,
            stdin,
            stdout,
        })
    }
}

impl Helper {
    /// End of input, so the helper exits and removes its scratch
    /// directory; killed if it has not within a second.
    async fn end(self) {
        let Helper {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        if tokio::time::timeout(Duration::from_secs(1), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
        }
    }
}

/// A helper that stopped answering: the process, to say why.
struct Broken {
    child: Child,
    error: std::io::Error,
}

impl Broken {
    /// Why, from its exit and the first line it wrote on stderr: a `415`
    /// when it could not run at all (the loader's 127: libavcodec
    /// missing), else a `422` naming the keyframe as the cause.
    async fn into_error(mut self, program: &Path) -> PackagerError {
        let _ = self.child.start_kill();
        let status = self.child.wait().await.ok();
        let mut text = Vec::new();
        if let Some(stderr) = self.child.stderr.as_mut() {
            let _ = stderr.take(4096).read_to_end(&mut text).await;
        }
        let text = String::from_utf8_lossy(&text);
        let line = text
            .lines()
            .next()
            .map_or_else(|| self.error.to_string(), str::to_owned);
        if status.and_then(|s| s.code()) == Some(127) {
            return no_decoder(program, &line);
        }
        PackagerError::Unprocessable(format!(
            "the preview decoder stopped on this keyframe: {line}"
        ))
    }
}

/// One job on `helper`'s pipes: the asked width and MP4 in, the answer
/// out; the helper back when it still answers.
async fn ask(
    mut helper: Helper,
    mp4: &[u8],
    width: Option<u32>,
) -> Result<(Helper, Result<Bytes, PackagerError>), Broken> {
    let exchange = async {
        let length = u32::try_from(mp4.len()).map_err(std::io::Error::other)?;
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&width.unwrap_or(0).to_be_bytes());
        head[4..].copy_from_slice(&length.to_be_bytes());
        helper.stdin.write_all(&head).await?;
        helper.stdin.write_all(mp4).await?;
        helper.stdin.flush().await?;
        let status = helper.stdout.read_u8().await?;
        let length = helper.stdout.read_u32().await? as usize;
        if length > MAX_JPEG_BYTES {
            return Err(std::io::Error::other(format!(
                "it answered {length} bytes, more than a picture"
            )));
        }
        let mut bytes = vec![0u8; length];
        helper.stdout.read_exact(&mut bytes).await?;
        Ok((status, bytes))
    };
    match exchange.await {
        Ok((0, jpeg)) if !jpeg.is_empty() => Ok((helper, Ok(Bytes::from(jpeg)))),
        Ok((_, why)) => {
            let why = String::from_utf8_lossy(&why);
            let answer = Err(PackagerError::Unprocessable(format!(
                "the keyframe could not be decoded to JPEG: {}",
                why.lines().next().unwrap_or("no picture made")
            )));
            Ok((helper, answer))
        }
        Err(error) => Err(Broken {
            child: helper.child,
            error,
        }),
    }
}

fn no_decoder(program: &Path, why: &str) -> PackagerError {
    PackagerError::NoDecoder(format!(
        "no JPEG decoder here: {} cannot be run ({why}); build it (make build) or set packager.preview_decoder, or ask for -preview.mp4",
        program.display()
    ))
}

pub(super) fn internal(reason: impl Into<String>) -> PackagerError {
    PackagerError::Decoder(reason.into())
}
