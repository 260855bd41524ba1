//! Synthetic transport streams for tests: exact PTS, GOP and packet layout,
//! so the segmenter's decisions can be asserted to the tick.

use std::collections::HashMap;

use crate::ts::{PACKET_SIZE, SYNC_BYTE};

/// Builds a transport stream packet by packet.
#[derive(Debug, Default)]
pub struct TsBuilder {
    cc: HashMap<u16, u8>,
    /// The bytes so far.
    pub out: Vec<u8>,
}

/// H.264 access unit bytes: an IDR (AUD, SPS, PPS, IDR slice) or a P slice,
/// padded to `size` bytes.
pub fn h264_access_unit(idr: bool, size: usize) -> Vec<u8> {
    let mut au = vec![0, 0, 0, 1, 0x09, 0xf0];
    if idr {
        au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x64, 0, 0x1f, 0xac]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xeb, 0xe3, 0xcb]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
    } else {
        au.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a, 0x02]);
    }
    au.resize(size.max(au.len()), 0x5a);
    au
}

impl TsBuilder {
    fn next_cc(&mut self, pid: u16) -> u8 {
        let cc = self.cc.entry(pid).or_insert(0x0f);
        *cc = (*cc + 1) & 0x0f;
        *cc
    }

    fn section(&mut self, pid: u16, section: &[u8]) {
        let mut p = [0xffu8; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = 0x40 | (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10 | self.next_cc(pid);
        p[4] = 0;
        p[5..5 + section.len()].copy_from_slice(section);
        self.out.extend_from_slice(&p);
    }

    /// A PAT with one program.
    pub fn pat(&mut self, program: u16, pmt_pid: u16) {
        let mut s = vec![0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0];
        s.extend_from_slice(&program.to_be_bytes());
        s.extend_from_slice(&(0xe000 | pmt_pid).to_be_bytes());
        let crc = mpeg2ts_reader::mpegts_crc::sum32(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        self.section(0, &s);
    }

    /// A PMT listing `(stream_type, pid)` streams, the first carrying the PCR.
    pub fn pmt(&mut self, program: u16, pmt_pid: u16, streams: &[(u8, u16)]) {
        let mut body = Vec::new();
        body.extend_from_slice(&(0xe000 | streams[0].1).to_be_bytes());
        body.extend_from_slice(&[0xf0, 0]);
        for &(stream_type, pid) in streams {
            body.push(stream_type);
            body.extend_from_slice(&(0xe000 | pid).to_be_bytes());
            body.extend_from_slice(&[0xf0, 0]);
        }
        let mut s = vec![0x02];
        s.extend_from_slice(&(0xb000 | (body.len() as u16 + 9)).to_be_bytes());
        s.extend_from_slice(&program.to_be_bytes());
        s.extend_from_slice(&[0xc1, 0, 0]);
        s.extend_from_slice(&body);
        let crc = mpeg2ts_reader::mpegts_crc::sum32(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        self.section(pmt_pid, &s);
    }

    /// A PES with the given timestamps (raw 33-bit values), packetized.
    pub fn pes(&mut self, pid: u16, stream_id: u8, pts: u64, dts: Option<u64>, es: &[u8]) {
        let ts = crate::timestamp::encode_pes_timestamp;
        let pts = pts & ((1 << 33) - 1);
        let mut pes = vec![0, 0, 1, stream_id, 0, 0, 0x80];
        match dts {
            Some(dts) => {
                pes.extend_from_slice(&[0xc0, 10]);
                pes.extend_from_slice(&ts(3, pts));
                pes.extend_from_slice(&ts(1, dts & ((1 << 33) - 1)));
            }
            None => {
                pes.extend_from_slice(&[0x80, 5]);
                pes.extend_from_slice(&ts(2, pts));
            }
        }
        pes.extend_from_slice(es);
        let mut rest = &pes[..];
        let mut first = true;
        while !rest.is_empty() {
            let mut p = [0xffu8; PACKET_SIZE];
            p[0] = SYNC_BYTE;
            p[1] = if first { 0x40 } else { 0 } | (pid >> 8) as u8;
            p[2] = pid as u8;
            let cc = self.next_cc(pid);
            let take = rest.len().min(184);
            if take < 184 {
                // Adaptation-field stuffing so the payload ends the packet.
                let af_len = 184 - take - 1;
                p[3] = 0x30 | cc;
                p[4] = af_len as u8;
                if af_len > 0 {
                    p[5] = 0;
                }
                p[PACKET_SIZE - take..].copy_from_slice(&rest[..take]);
            } else {
                p[3] = 0x10 | cc;
                p[4..].copy_from_slice(&rest[..184]);
            }
            rest = &rest[take..];
            first = false;
            self.out.extend_from_slice(&p);
        }
    }
}

/// An H.264 + audio stream: `frames` video frames at 25 fps with an IDR every
/// `gop` frames, and an audio PES every 3 frames (120 ms). PTS starts at
/// `start`; PAT and PMT repeat every 10 frames.
pub fn av_stream(start: u64, frames: u64, gop: u64) -> Vec<u8> {
    let mut b = TsBuilder::default();
    for i in 0..frames {
        if i % 10 == 0 {
            b.pat(1, 0x1000);
            b.pmt(1, 0x1000, &[(0x1b, 0x100), (0x0f, 0x101)]);
        }
        let pts = start + i * 3600;
        b.pes(
            0x100,
            0xe0,
            pts + 3600,
            Some(pts),
            &h264_access_unit(i % gop == 0, 1500),
        );
        if i % 3 == 0 {
            b.pes(
                0x101,
                0xc0,
                pts,
                None,
                &[0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc, 1, 2, 3],
            );
        }
    }
    b.out
}
