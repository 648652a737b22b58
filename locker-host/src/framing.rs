//! Reading envelopes out of a byte stream and batching them into one write.

use locker_core::envelope::Envelope;
use locker_core::wire::{decode_frame, encode_frame, WireError};

/// Bytes read from a connection and not yet decoded. The socket is read
/// straight into its buffer ([`FrameReader::spare`], then
/// [`FrameReader::filled`]), so bytes are copied once, by the kernel.
#[derive(Default)]
pub struct FrameReader {
    /// Initialised bytes; `start..end` are read and not yet decoded.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: usize,
}

/// The smallest free space offered to a read.
const MIN_READ: usize = 16 * 1024;
/// Decoded bytes kept in front of undecoded ones before they are moved out.
const COMPACT_AT: usize = 32 * 1024;

impl FrameReader {
    /// A reader refusing frames above `max_frame` bytes.
    pub fn new(max_frame: usize) -> FrameReader {
        FrameReader {
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            max_frame,
        }
    }

    /// Free space at the end of the buffer (at least 16 KiB) for the next
    /// read; report what was read with [`FrameReader::filled`].
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > COMPACT_AT {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < MIN_READ {
            let len = (self.end + MIN_READ).max(2 * self.buf.len());
            self.buf.resize(len, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of the last [`FrameReader::spare`] as read.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            self.filled(n);
            bytes = &bytes[n..];
        }
    }

    /// The next complete envelope, `Ok(None)` if more bytes are needed, or
    /// the reason to close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Envelope>, WireError> {
        match decode_frame::<Envelope>(&self.buf[self.start..self.end], self.max_frame)? {
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

    /// Frames beyond the first buffer, and one larger than it, arrive in
    /// pieces of every alignment.
    #[test]
    fn frames_beyond_and_larger_than_the_buffer_are_reassembled() {
        let big = Envelope::ClientRequest {
            id: 7,
            request: locker_core::Request::Lock {
                key: vec![b'k'; 200 * 1024],
                value: b"v".to_vec(),
                lease: std::time::Duration::from_secs(1),
                wait: std::time::Duration::ZERO,
            },
        };
        let mut sent = Vec::new();
        for i in 0..5_000 {
            sent.push(Envelope::StatusRequest { id: i });
        }
        sent.push(big);
        sent.push(Envelope::Welcome);
        let mut batch = FrameBatch::default();
        for e in &sent {
            batch.push(e);
        }
        for piece in [1, 7_001, 40_000, 300_000] {
            let mut r = FrameReader::new(1 << 20);
            let mut got = Vec::new();
            for b in batch.bytes().chunks(piece) {
                r.push(b);
                while let Some(e) = r.next_frame().unwrap() {
                    got.push(e);
                }
            }
            assert!(got == sent, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_reading_it() {
        let mut r = FrameReader::new(16);
        r.push(&1000u32.to_le_bytes());
        assert!(matches!(r.next_frame(), Err(WireError::Oversize { .. })));
    }
}
