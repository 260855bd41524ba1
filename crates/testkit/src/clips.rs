//! The committed clips of `testdata/` (made by `scripts/make-clips.sh`,
//! described in `testdata/README.md`), by name.
//!
//! Paths come from [`dvr_common::fuzz_corpus::repo_path`], found at run time
//! rather than baked in with `env!`: several clones share one build cache,
//! and a test binary another clone compiled must still find this clone's
//! clips.

use std::path::PathBuf;

use dvr_common::fuzz_corpus::repo_path;

/// H.264 1280x720 and AAC, 10 s: the everyday clip (and `make run`'s).
pub const H264_AAC_720P: &str = "h264_aac_720p.ts";
/// H.265 with CRA pictures instead of IDRs, and AAC, 8 s.
pub const H265_AAC: &str = "h265_aac.ts";
/// AAC alone, no video, 10 s.
pub const AAC_ONLY: &str = "aac_only.ts";
/// H.264 with two AAC tracks, `eng` and `deu`, 8 s.
pub const TWO_AUDIO_LANGS: &str = "two_audio_langs.ts";
/// Two H.264 renditions with aligned keyframes and AAC, 6 s.
pub const TWO_RENDITIONS: &str = "two_renditions.ts";
/// Two H.264 renditions whose keyframes do not align, 6 s.
pub const UNALIGNED_RENDITIONS: &str = "unaligned_renditions.ts";
/// A 33-bit PTS wrap 5.5 s in, 10 s.
pub const PTS_WRAP: &str = "pts_wrap.ts";
/// A 300 s PTS jump halfway, 10 s of content.
pub const PTS_JUMP: &str = "pts_jump.ts";
/// Programs 10 and 20, each H.264 and AAC, 8 s.
pub const MULTI_PROGRAM: &str = "multi_program.ts";
/// H.264 with AC-3 5.1 and MPEG-1 Layer II audio, 6 s.
pub const H264_AC3_MP2: &str = "h264_ac3_mp2.ts";
/// H.264 and AAC re-interleaved packet by packet, as broadcast muxers do, 8 s.
pub const INTERLEAVED: &str = "interleaved.ts";

/// Every committed clip.
pub const ALL: &[&str] = &[
    H264_AAC_720P,
    H265_AAC,
    AAC_ONLY,
    TWO_AUDIO_LANGS,
    TWO_RENDITIONS,
    UNALIGNED_RENDITIONS,
    PTS_WRAP,
    PTS_JUMP,
    MULTI_PROGRAM,
    H264_AC3_MP2,
    INTERLEAVED,
];

/// The path of a file under `testdata/`, e.g. a clip by name.
pub fn path(name: &str) -> PathBuf {
    repo_path("testdata").join(name)
}

/// The bytes of a file under `testdata/`; panics naming the path if it
/// cannot be read.
pub fn read(name: &str) -> Vec<u8> {
    let path = path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_clip_is_committed() {
        for name in ALL {
            assert!(path(name).is_file(), "{name} is not in testdata/");
        }
    }
}
