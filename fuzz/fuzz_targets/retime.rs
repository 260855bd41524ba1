#![no_main]
//! Packets from a file being looped: the retimer must never panic, shifting
//! back must restore every packet, and renumbered counters must be continuous.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dvr_media::fuzzing::exercise_retime(data));
