//! Datagrams sent to an SRT listener port (`dvr_ingest::input::srt`):
//! anyone who can reach the port can send them.
//!
//! Shared by the `srt` fuzz target and the ingest crate's corpus replay
//! test. The input's first byte picks the port's streams (bit 0: two
//! streams by id, `cam-a` in the clear and `cam-b` with a passphrase; else
//! one stream taking every caller, with the passphrase), then come
//! datagrams, each a peer byte, a big-endian 16-bit length and the bytes
//! (`fuzz/corpus/srt/` holds ffmpeg's and srt-live-transmit's handshakes
//! and first packets in that framing). They go through the listener
//! port's core, as its task drives it, answered by our routing
//! ([`dvr_ingest::input::srt::engine::feed_listener`]). The check:
//! nothing of ours panics. srt-protocol 0.4.4 panics on some handshakes
//! (an encrypting caller toward a stream without a passphrase, in the
//! corpus); the port contains that and starts its handshakes over, as at
//! run time.

use dvr_common::config::{InputUrl, SrtInput};
use dvr_ingest::input::srt::engine::feed_listener;
use dvr_ingest::input::srt::Routes;

/// The passphrase of the corpus's encrypted callers.
pub const PASSPHRASE: &str = "correct-horse-battery";

fn srt(url: &str) -> SrtInput {
    match url.parse() {
        Ok(InputUrl::Srt(srt)) => srt,
        _ => unreachable!("a valid SRT URL"),
    }
}

/// Feeds the datagrams of `data` to a listener with the streams it picks.
pub fn exercise_srt(data: &[u8]) {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let routes = if pick & 1 == 1 {
        Routes::for_fuzzing(vec![
            ("a".into(), srt("srt://:9000?mode=listener&streamid=cam-a")),
            (
                "b".into(),
                srt(&format!(
                    "srt://:9000?mode=listener&streamid=cam-b&passphrase={PASSPHRASE}"
                )),
            ),
        ])
    } else {
        Routes::for_fuzzing(vec![(
            "only".into(),
            srt(&format!(
                "srt://:9000?mode=listener&passphrase={PASSPHRASE}"
            )),
        )])
    };
    let mut datagrams = Vec::new();
    while let Some(header) = rest.get(..3) {
        let len = usize::from(u16::from_be_bytes([header[1], header[2]]));
        let bytes = rest.get(3..3 + len).unwrap_or(&rest[3..]);
        datagrams.push((header[0], bytes));
        rest = &rest[3 + bytes.len()..];
    }
    let _contained = feed_listener(datagrams, &routes);
}
