//! Fuzz bytes read as the fields of a structured input: the targets that
//! build a value (a token to sign, a URL to write) take its parts from here.
//!
//! Every read succeeds: past the end it yields zeros and empty strings, so
//! a short input is still a valid (small) case and the fuzzer never wastes
//! a run on a decoding error of our own.

// Each exercise module includes its own copy and uses a part of it.
#![allow(dead_code)]

/// A cursor over fuzz bytes.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte, 0 past the end.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next eight bytes, little-endian, zero-padded past the end.
    pub fn u64(&mut self) -> u64 {
        let mut word = [0u8; 8];
        for slot in &mut word {
            *slot = self.byte();
        }
        u64::from_le_bytes(word)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n.max(1)
    }

    /// A number in `0..=max` (`max >= 0`) as an `i64`.
    pub fn up_to(&mut self, max: i64) -> i64 {
        let bound = u64::try_from(max).unwrap_or(0).saturating_add(1);
        i64::try_from(self.below(bound)).unwrap_or(0)
    }

    /// A small signed offset, -128..=127.
    pub fn delta(&mut self) -> i64 {
        i64::from(i8::from_le_bytes([self.byte()]))
    }

    /// The next byte-length-prefixed run of bytes (shorter past the end).
    pub fn bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte()).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// [`Input::bytes`] as text, invalid UTF-8 replaced.
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }

    /// What is left, as text, invalid UTF-8 replaced.
    pub fn rest_text(self) -> String {
        String::from_utf8_lossy(self.data).into_owned()
    }
}
