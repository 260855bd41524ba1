//! Metadata of a saved export (`save-mp4-…&meta=true`, the API's `meta`):
//! `moov/udta/meta/ilst`, iTunes-style, which is what ffmpeg, GStreamer,
//! players and file managers read. Well-known names get their iTunes atom
//! (`title` is `©nam`, `comment` `©cmt`, …) so tools show them by name;
//! any other name goes into a freeform `----` item (`mean`
//! `com.apple.iTunes`, `name` the key), which ffmpeg reads back under the
//! same key. Values are UTF-8 text (`data` type 1).

use crate::fmp4::boxes::{close, open, open_full, Put};

/// Names that have an iTunes atom of their own, as ffmpeg names them.
const KNOWN: [(&str, &[u8; 4]); 10] = [
    ("title", b"\xa9nam"),
    ("comment", b"\xa9cmt"),
    ("artist", b"\xa9ART"),
    ("album", b"\xa9alb"),
    ("date", b"\xa9day"),
    ("genre", b"\xa9gen"),
    ("composer", b"\xa9wrt"),
    ("description", b"desc"),
    ("copyright", b"cprt"),
    ("encoder", b"\xa9too"),
];

/// The `udta` box carrying `tags` (name, value), in order; empty when
/// there are none.
pub fn udta(tags: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    if tags.is_empty() {
        return out;
    }
    let udta = open(&mut out, b"udta");
    let meta = open_full(&mut out, b"meta", 0, 0);
    let hdlr = open_full(&mut out, b"hdlr", 0, 0);
    out.u32(0); // pre_defined
    out.extend_from_slice(b"mdir");
    out.extend_from_slice(b"appl");
    out.u32(0);
    out.u32(0);
    out.u8(0); // empty name
    close(&mut out, hdlr);
    let ilst = open(&mut out, b"ilst");
    for (name, value) in tags {
        let known = KNOWN.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
        let item = open(&mut out, known.map_or(b"----", |k| k.1));
        if known.is_none() {
            let mean = open_full(&mut out, b"mean", 0, 0);
            out.extend_from_slice(b"com.apple.iTunes");
            close(&mut out, mean);
            let key = open_full(&mut out, b"name", 0, 0);
            out.extend_from_slice(name.as_bytes());
            close(&mut out, key);
        }
        let data = open(&mut out, b"data");
        out.u32(1); // well-known type 1: UTF-8
        out.u32(0); // locale
        out.extend_from_slice(value.as_bytes());
        close(&mut out, data);
        close(&mut out, item);
    }
    close(&mut out, ilst);
    close(&mut out, meta);
    close(&mut out, udta);
    out
}
