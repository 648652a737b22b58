//! Reading envelopes out of a byte stream and batching them into one write.

use locker_core::envelope::Envelope;
use locker_core::wire::{decode_frame, encode_frame, WireError};

/// Bytes read from a connection and not yet decoded.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    max_frame: usize,
}

impl FrameReader {
    /// A reader refusing frames above `max_frame` bytes.
    pub fn new(max_frame: usize) -> FrameReader {
        FrameReader {
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            max_frame,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 32 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete envelope, `Ok(None)` if more bytes are needed, or
    /// the reason to close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Envelope>, WireError> {
        match decode_frame::<Envelope>(&self.buf[self.start..], self.max_frame)? {
            Some((env, used)) => {
                self.start += used;
                Ok(Some(env))
            }
            None => Ok(None),
        }
    }
}

/// Encodes envelopes one after another into one buffer, for one write.
#[derive(Default)]
pub struct FrameBatch {
    buf: Vec<u8>,
}

impl FrameBatch {
    /// Appends one frame.
    pub fn push(&mut self, env: &Envelope) {
        // Encoding the crate's own types cannot fail.
        let _ = encode_frame(env, &mut self.buf);
    }
    /// Bytes batched so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// Whether nothing is batched.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// The bytes to write.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
    /// Forgets the written bytes, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// Frames written per syscall at most (a bound on a batch's size).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let mut batch = FrameBatch::default();
        batch.push(&Envelope::Welcome);
        batch.push(&Envelope::StatusRequest { id: 9 });
        let bytes = batch.bytes().to_vec();
        let mut r = FrameReader::new(1024);
        let mut got = Vec::new();
        for b in bytes.chunks(3) {
            r.push(b);
            while let Some(e) = r.next_frame().unwrap() {
                got.push(e);
            }
        }
        assert_eq!(
            got,
            vec![Envelope::Welcome, Envelope::StatusRequest { id: 9 }]
        );
    }

    #[test]
    fn an_oversized_frame_is_refused_before_reading_it() {
        let mut r = FrameReader::new(16);
        r.push(&1000u32.to_le_bytes());
        assert!(matches!(r.next_frame(), Err(WireError::Oversize { .. })));
    }
}
