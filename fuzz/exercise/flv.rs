//! FLV tag bodies (`dvr_media::flv`) from any bytes: an RTMP publisher
//! sends them, and anyone who can reach the RTMP port can publish.
//!
//! Shared by the `flv` fuzz target and the media crate's corpus replay
//! test. The input is a run of tags, each `kind` (bit 0: video, else
//! audio), a big-endian 32-bit RTMP timestamp, a 16-bit length and the
//! body (`fuzz/corpus/flv/` holds ffmpeg's tags in that framing). Besides
//! not panicking: what comes out is whole 188-byte packets, an error writes
//! nothing and says why on one line, and the demuxer reads back exactly one
//! access unit per frame the converter counted.

use bytes::BytesMut;
use dvr_media::demux::{DemuxEvent, Demuxer};
use dvr_media::flv::FlvToTs;
use dvr_media::ts::PACKET_SIZE;

/// Feeds the tags of `data` to a converter and checks its output.
pub fn exercise_flv(data: &[u8]) {
    let mut conv = FlvToTs::new();
    let mut out = BytesMut::new();
    let mut rest = data;
    while let Some(header) = rest.get(..7) {
        let video = header[0] & 1 == 1;
        let ms = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let len = usize::from(u16::from_be_bytes([header[5], header[6]]));
        let body = rest.get(7..7 + len).unwrap_or(&rest[7..]);
        rest = &rest[7 + body.len()..];
        let before = out.len();
        let pushed = if video {
            conv.push_video(ms, body, &mut out)
        } else {
            conv.push_audio(ms, body, &mut out)
        };
        match pushed {
            Ok(_) => assert_eq!((out.len() - before) % PACKET_SIZE, 0),
            Err(e) => {
                assert_eq!(out.len(), before, "an error writes nothing: {e}");
                let line = e.to_string();
                assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
            }
        }
    }
    let mut units = 0u64;
    let mut demux = Demuxer::new(None);
    let mut on = |e: DemuxEvent<'_>| units += u64::from(matches!(e, DemuxEvent::AccessUnit(_)));
    demux.push(&out, &mut on);
    demux.finish(&mut on);
    assert_eq!(units, conv.frames, "one access unit per frame");
}
