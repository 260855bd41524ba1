//! `dvr-preview-decoder`: the packager's JPEG previews, decoded by Debian's
//! libavcodec in a process that lives as long as its packager thread.
//!
//! **Why a process of its own, and a long-lived one.** Broadcast sends
//! H.264 High and H.265, interlaced included, which only libavcodec
//! decodes among what Debian ships; decoding recorded, untrusted media in
//! C belongs outside the packager's address space, so a crash here costs
//! one picture, not the node. Starting a process per picture (`ffmpeg`,
//! as the first version did) cost ~50 ms of CPU in the dynamic loader and
//! page faults for ~7 ms of decoding, and on kernels that do not preempt
//! kernel code (`PREEMPT_NONE`, the server default) that start and exit
//! delayed playback's threads even under `SCHED_IDLE`. So one process
//! serves picture after picture; the packager starts it from a thread
//! under `SCHED_IDLE`, which it inherits.
//!
//! **Protocol**, on stdin and stdout, one job at a time:
//! - asked: width (`u32`, big-endian; 0 keeps the decoded size), length
//!   (`u32`) and that many bytes of MP4 holding the keyframe first;
//! - answered: a status byte (0: a JPEG follows; 1: a line saying why the
//!   picture could not be made), length (`u32`) and the bytes.
//!
//! End of input ends the process. An MP4 longer than [`MAX_MP4_BYTES`] is
//! refused, and the process ends (it cannot skip what it will not read).

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use ff::format::Pixel;
use ff::software::scaling;
use ffmpeg_next as ff;

/// The most bytes of MP4 one job may hold (the packager sends at most
/// 32 MiB: one keyframe).
const MAX_MP4_BYTES: u32 = 32 << 20;
/// JPEG quality as `ffmpeg -q:v 3`: fixed quantiser 3 (1 best, 31 worst).
const QUANTISER: i32 = 3;

fn main() {
    if let Err(e) = run() {
        eprintln!("dvr-preview-decoder: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    ff::init().map_err(|e| io::Error::other(format!("libavcodec did not start: {e}")))?;
    // What goes wrong is answered per job; libav's own lines would only
    // fill a pipe nobody reads.
    ff::util::log::set_level(ff::util::log::Level::Quiet);
    // Removed at end of input; the packager ends its decoders that way
    // and kills one only when a picture overruns its time.
    let scratch = tempfile::Builder::new()
        .prefix("dvr-preview-decoder-")
        .tempdir()?;
    let file = scratch.path().join("keyframe.mp4");
    let mut input = BufReader::new(io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    loop {
        let mut head = [0u8; 8];
        match input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let width = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let length = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if length > MAX_MP4_BYTES {
            answer(
                &mut output,
                Err(format!(
                    "the keyframe is {length} bytes, more than {MAX_MP4_BYTES}"
                )),
            )?;
            return Ok(());
        }
        let mut mp4 = vec![0u8; length as usize];
        input.read_exact(&mut mp4)?;
        std::fs::write(&file, &mp4)?;
        let width = (width != 0).then_some(width);
        answer(&mut output, jpeg(&file, width).map_err(|e| e.to_string()))?;
    }
}

fn answer(output: &mut impl Write, made: Result<Vec<u8>, String>) -> io::Result<()> {
    let (status, bytes) = match made {
        Ok(jpeg) => (0u8, jpeg),
        Err(why) => (1u8, why.into_bytes()),
    };
    let length = u32::try_from(bytes.len()).map_err(io::Error::other)?;
    output.write_all(&[status])?;
    output.write_all(&length.to_be_bytes())?;
    output.write_all(&bytes)?;
    output.flush()
}

/// Why a picture was not made.
#[derive(Debug)]
enum Failed {
    Av(&'static str, ff::Error),
    NoVideo,
    NoPicture,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Av(step, e) => write!(f, "{step}: {e}"),
            Self::NoVideo => f.write_str("the MP4 has no video track"),
            Self::NoPicture => f.write_str("the decoder gave no picture for the keyframe"),
        }
    }
}

fn av(step: &'static str) -> impl FnOnce(ff::Error) -> Failed {
    move |e| Failed::Av(step, e)
}

/// The first picture of the MP4 at `file`'s first video track, scaled to
/// `width` (the aspect kept, an even height) and encoded as JPEG.
fn jpeg(file: &Path, width: Option<u32>) -> Result<Vec<u8>, Failed> {
    let opened = ff::format::input(file);
    // Open, it needs no name: a process killed mid-decode leaves no file.
    let _ = std::fs::remove_file(file);
    let mut input = opened.map_err(av("reading the MP4"))?;
    let stream = input
        .streams()
        .best(ff::media::Type::Video)
        .ok_or(Failed::NoVideo)?;
    let track = stream.index();
    let mut context = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(av("the video track's parameters"))?;
    // One thread: the packager runs as many decoders as it has workers.
    context.set_threading(ff::codec::threading::Config {
        count: 1,
        ..Default::default()
    });
    let mut decoder = context
        .decoder()
        .video()
        .map_err(av("opening the decoder"))?;
    let mut picture = ff::frame::Video::empty();
    let mut decoded = false;
    for (stream, packet) in input.packets() {
        if stream.index() != track {
            continue;
        }
        decoder
            .send_packet(&packet)
            .map_err(av("decoding the keyframe"))?;
        if decoder.receive_frame(&mut picture).is_ok() {
            decoded = true;
            break;
        }
    }
    if !decoded {
        decoder.send_eof().map_err(av("ending the decode"))?;
        decoder
            .receive_frame(&mut picture)
            .map_err(|_| Failed::NoPicture)?;
    }
    let (w, h) = size(picture.width(), picture.height(), width);
    let mut scaler = scaling::Context::get(
        picture.format(),
        picture.width(),
        picture.height(),
        Pixel::YUVJ420P,
        w,
        h,
        scaling::Flags::BICUBIC,
    )
    .map_err(av("scaling the picture"))?;
    let mut scaled = ff::frame::Video::empty();
    scaler
        .run(&picture, &mut scaled)
        .map_err(av("scaling the picture"))?;
    let codec = ff::encoder::find(ff::codec::Id::MJPEG)
        .ok_or(Failed::Av("no JPEG encoder", ff::Error::EncoderNotFound))?;
    let mut encoder = ff::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(av("the JPEG encoder"))?;
    encoder.set_width(w);
    encoder.set_height(h);
    encoder.set_format(Pixel::YUVJ420P);
    encoder.set_time_base((1, 25));
    encoder.set_qmin(QUANTISER);
    encoder.set_qmax(QUANTISER);
    let mut encoder = encoder
        .open_as(codec)
        .map_err(av("opening the JPEG encoder"))?;
    scaled.set_pts(Some(0));
    encoder
        .send_frame(&scaled)
        .map_err(av("encoding the JPEG"))?;
    encoder.send_eof().map_err(av("encoding the JPEG"))?;
    let mut packet = ff::Packet::empty();
    encoder
        .receive_packet(&mut packet)
        .map_err(av("encoding the JPEG"))?;
    Ok(packet.data().unwrap_or_default().to_vec())
}

/// The picture's size for `width`: as decoded when none is asked, else
/// `width` wide with the aspect kept, the height rounded and then down to
/// even (as `ffmpeg -vf scale=W:-2`).
fn size(decoded_width: u32, decoded_height: u32, width: Option<u32>) -> (u32, u32) {
    match width {
        None => (decoded_width, decoded_height),
        Some(width) => {
            let across = u64::from(decoded_width.max(1));
            let height = (u64::from(decoded_height) * u64::from(width) + across / 2) / across;
            let even = u32::try_from(height).unwrap_or(u32::MAX) & !1;
            (width, even.max(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn a_width_keeps_the_aspect_with_an_even_height() {
        assert_eq!(size(1280, 720, None), (1280, 720));
        assert_eq!(size(1280, 720, Some(320)), (320, 180));
        // 1920x1080 at 333 wide: 187.3 high, rounded, then even.
        assert_eq!(size(1920, 1080, Some(333)), (333, 186));
        assert_eq!(size(1920, 1080, Some(1)), (1, 2));
    }
}
