//! The segment feed's wire format: one long HTTP response of frames.
//!
//! ```text
//! frame = kind u8 | header_len u32 | payload_len u32 | header | payload | mac [32]
//! ```
//!
//! Integers are big-endian. `kind` 1 is a segment: its header is the
//! segment's metadata as JSON (seq, UTC start, duration and first PTS in
//! 90 kHz ticks, byte length, flags) and its payload the stored bytes,
//! unchanged (a segment starts with its PAT and PMT, so its codecs travel
//! with it). `kind` 2 is a heartbeat sent while the tape has nothing new:
//! its header names the newest seq, its payload is empty.
//!
//! `mac` is the HMAC-SHA256, keyed by the cluster key, of a version tag,
//! the nonce of the request this answers, the frame's position in the
//! answer (0, 1, …) and everything before the MAC. A frame altered,
//! dropped, reordered or replayed from another answer fails on the
//! subscriber, which then reconnects from the last seq it kept.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use dvr_media::SegmentMeta;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::key::{ClusterKey, HmacSha256};

/// The content type of a feed answer.
pub const FEED_CONTENT_TYPE: &str = "application/vnd.dvr.segment-feed.v1";

const MAC_TAG: &[u8] = b"DVR-FEED-V1";
const KIND_SEGMENT: u8 = 1;
const KIND_HEARTBEAT: u8 = 2;
/// kind, header length, payload length.
const PREFIX_LEN: usize = 9;
const MAC_LEN: usize = 32;
/// The largest header accepted: metadata is a few hundred bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// One segment of the tape, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedSegment {
    /// Its metadata.
    pub meta: SegmentMeta,
    /// Its bytes.
    pub payload: Bytes,
}

/// What a feed carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedItem {
    /// The next segment.
    Segment(FeedSegment),
    /// Nothing new yet; the link is alive.
    Heartbeat {
        /// The newest seq on the source's tape, `None` on an empty tape.
        newest_seq: Option<u64>,
    },
}

#[derive(Serialize, Deserialize)]
struct HeartbeatHeader {
    newest_seq: Option<u64>,
}

/// Writes the frames of one answer.
#[derive(Debug)]
pub struct FeedEncoder {
    key: ClusterKey,
    nonce: String,
    position: u64,
}

impl FeedEncoder {
    /// Frames for the request whose nonce is `nonce`.
    pub fn new(key: ClusterKey, nonce: String) -> Self {
        Self {
            key,
            nonce,
            position: 0,
        }
    }

    /// A segment's frame, in three pieces so the payload is not copied.
    pub fn segment(&mut self, meta: &SegmentMeta, payload: Bytes) -> [Bytes; 3] {
        let header = serde_json::to_vec(meta).expect("segment metadata serializes");
        self.frame(KIND_SEGMENT, &header, payload)
    }

    /// A heartbeat's frame.
    pub fn heartbeat(&mut self, newest_seq: Option<u64>) -> [Bytes; 3] {
        let header =
            serde_json::to_vec(&HeartbeatHeader { newest_seq }).expect("a heartbeat serializes");
        self.frame(KIND_HEARTBEAT, &header, Bytes::new())
    }

    fn frame(&mut self, kind: u8, header: &[u8], payload: Bytes) -> [Bytes; 3] {
        let mut head = BytesMut::with_capacity(PREFIX_LEN + header.len());
        head.put_u8(kind);
        head.put_u32(u32::try_from(header.len()).expect("headers are small"));
        head.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        head.put_slice(header);
        let mac = frame_mac(&self.key, &self.nonce, self.position, &head, &payload);
        self.position += 1;
        [head.freeze(), payload, Bytes::copy_from_slice(&mac)]
    }
}

fn frame_mac(
    key: &ClusterKey,
    nonce: &str,
    position: u64,
    head: &[u8],
    payload: &[u8],
) -> [u8; 32] {
    let mut mac: HmacSha256 = key.mac();
    mac.update(MAC_TAG);
    mac.update(nonce.as_bytes());
    mac.update(&position.to_be_bytes());
    mac.update(head);
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// Why a feed's bytes are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A kind this version does not know.
    #[error("feed frame {position} has unknown kind {kind}")]
    UnknownKind {
        /// The frame's position in the answer.
        position: u64,
        /// Its kind byte.
        kind: u8,
    },
    /// A length over the limit.
    #[error("feed frame {position} announces a {what} of {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// The frame's position.
        position: u64,
        /// `header` or `payload`.
        what: &'static str,
        /// The announced length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The MAC does not match.
    #[error(
        "feed frame {position} fails its MAC: altered, reordered or not from this cluster's origin"
    )]
    BadMac {
        /// The frame's position.
        position: u64,
    },
    /// The header is not what its kind needs, or disagrees with the payload.
    #[error("feed frame {position} is malformed: {reason}")]
    Malformed {
        /// The frame's position.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The answer ended inside a frame.
    #[error("the feed ended inside frame {position}")]
    Truncated {
        /// The frame's position.
        position: u64,
    },
}

/// Reads the frames of one answer from its bytes as they arrive; holds at
/// most one frame.
#[derive(Debug)]
pub struct FeedDecoder {
    key: ClusterKey,
    nonce: String,
    max_payload: usize,
    position: u64,
    buffer: BytesMut,
}

impl FeedDecoder {
    /// A decoder for the answer to the request with `nonce`, refusing
    /// payloads over `max_payload` bytes before buffering them.
    pub fn new(key: ClusterKey, nonce: String, max_payload: usize) -> Self {
        Self {
            key,
            nonce,
            max_payload,
            position: 0,
            buffer: BytesMut::new(),
        }
    }

    /// Adds bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, verified; `None` until one is complete.
    pub fn next_item(&mut self) -> Result<Option<FeedItem>, FrameError> {
        let position = self.position;
        if self.buffer.len() < PREFIX_LEN {
            return Ok(None);
        }
        let kind = self.buffer[0];
        let mut lens = &self.buffer[1..PREFIX_LEN];
        let header_len = lens.get_u32() as usize;
        let payload_len = lens.get_u32() as usize;
        if kind != KIND_SEGMENT && kind != KIND_HEARTBEAT {
            return Err(FrameError::UnknownKind { position, kind });
        }
        for (what, len, limit) in [
            ("header", header_len, MAX_HEADER_BYTES),
            ("payload", payload_len, self.max_payload),
        ] {
            if len > limit {
                return Err(FrameError::TooLarge {
                    position,
                    what,
                    len,
                    limit,
                });
            }
        }
        let total = PREFIX_LEN + header_len + payload_len + MAC_LEN;
        if self.buffer.len() < total {
            self.buffer.reserve(total - self.buffer.len());
            return Ok(None);
        }
        let mut frame = self.buffer.split_to(total);
        let mac = frame.split_off(total - MAC_LEN);
        let head = frame.split_to(PREFIX_LEN + header_len).freeze();
        let payload = frame.freeze();
        let expected = frame_mac(&self.key, &self.nonce, position, &head, &payload);
        if !bool::from(expected.as_slice().ct_eq(&mac)) {
            return Err(FrameError::BadMac { position });
        }
        self.position += 1;
        let header = &head[PREFIX_LEN..];
        let malformed = |reason: String| FrameError::Malformed { position, reason };
        match kind {
            KIND_SEGMENT => {
                let meta: SegmentMeta = serde_json::from_slice(header)
                    .map_err(|e| malformed(format!("segment header: {e}")))?;
                if meta.bytes != payload.len() as u64 {
                    return Err(malformed(format!(
                        "segment {} says {} bytes, carries {}",
                        meta.seq,
                        meta.bytes,
                        payload.len()
                    )));
                }
                Ok(Some(FeedItem::Segment(FeedSegment { meta, payload })))
            }
            _ => {
                let h: HeartbeatHeader = serde_json::from_slice(header)
                    .map_err(|e| malformed(format!("heartbeat header: {e}")))?;
                Ok(Some(FeedItem::Heartbeat {
                    newest_seq: h.newest_seq,
                }))
            }
        }
    }

    /// Checks the answer ended between frames.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                position: self.position,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvr_common::UtcMs;
    use dvr_media::SegmentFlags;
    use proptest::prelude::*;

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    fn key() -> ClusterKey {
        ClusterKey::new("a-cluster-key-for-the-frames").unwrap()
    }

    fn meta(seq: u64, bytes: u64) -> SegmentMeta {
        SegmentMeta {
            seq,
            utc_start: UtcMs(1_780_000_000_000 + seq as i64 * 2_000),
            duration: dvr_common::Ticks(180_000),
            pts_start: dvr_common::Ticks(90_000 * seq as i64),
            bytes,
            flags: SegmentFlags {
                discontinuity: seq == 7,
                independent: true,
            },
        }
    }

    fn answer(items: &[FeedItem]) -> Vec<u8> {
        let mut enc = FeedEncoder::new(key(), NONCE.into());
        let mut out = Vec::new();
        for item in items {
            let pieces = match item {
                FeedItem::Segment(s) => enc.segment(&s.meta, s.payload.clone()),
                FeedItem::Heartbeat { newest_seq } => enc.heartbeat(*newest_seq),
            };
            for p in pieces {
                out.extend_from_slice(&p);
            }
        }
        out
    }

    fn segment(seq: u64, len: usize) -> FeedItem {
        let payload = Bytes::from(
            (0..len)
                .map(|i| (i * 7 + seq as usize) as u8)
                .collect::<Vec<u8>>(),
        );
        FeedItem::Segment(FeedSegment {
            meta: meta(seq, len as u64),
            payload,
        })
    }

    fn decode_all(bytes: &[u8], chunk: usize) -> Result<Vec<FeedItem>, FrameError> {
        let mut dec = FeedDecoder::new(key(), NONCE.into(), 1 << 20);
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            dec.push(piece);
            while let Some(item) = dec.next_item()? {
                out.push(item);
            }
        }
        dec.finish()?;
        Ok(out)
    }

    proptest! {
        #[test]
        fn frames_come_back_whole_however_the_bytes_are_cut(chunk in 1usize..5000) {
            let items = vec![segment(5, 3000), FeedItem::Heartbeat { newest_seq: Some(5) }, segment(6, 0), segment(7, 188 * 7)];
            prop_assert_eq!(decode_all(&answer(&items), chunk).unwrap(), items);
        }

        #[test]
        fn any_altered_byte_is_caught(at in 0usize..1400, bit in 0u8..8) {
            let items = vec![segment(5, 1000), segment(6, 300)];
            let mut bytes = answer(&items);
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
            prop_assert!(decode_all(&bytes, 4096).is_err());
        }
    }

    #[test]
    fn a_dropped_or_foreign_frame_fails_its_mac() {
        let one = answer(&[segment(5, 100)]);
        let two = answer(&[segment(5, 100), segment(6, 100)]);
        // The second frame alone sits at position 0: refused.
        assert_eq!(
            decode_all(&two[one.len()..], 4096).unwrap_err(),
            FrameError::BadMac { position: 0 }
        );
        // Frames answering another request (another nonce) are refused.
        let mut dec = FeedDecoder::new(key(), "ffeeddccbbaa99887766554433221100".into(), 1 << 20);
        dec.push(&one);
        assert_eq!(
            dec.next_item().unwrap_err(),
            FrameError::BadMac { position: 0 }
        );
        // An answer cut inside a frame says so.
        assert_eq!(
            decode_all(&one[..one.len() - 1], 4096).unwrap_err(),
            FrameError::Truncated { position: 0 }
        );
    }

    #[test]
    fn an_oversized_payload_is_refused_before_it_is_buffered() {
        let bytes = answer(&[segment(5, 2000)]);
        let mut dec = FeedDecoder::new(key(), NONCE.into(), 1000);
        dec.push(&bytes[..PREFIX_LEN]);
        let err = dec.next_item().unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    what: "payload",
                    len: 2000,
                    ..
                }
            ),
            "{err}"
        );
    }
}
