//! Frames on the wire: a little-endian `u32` length, a protocol version byte,
//! then a postcard-encoded value. The length counts the version byte and the
//! payload.
//!
//! ```
//! use locker_core::wire::{decode_frame, encode_frame, DEFAULT_MAX_FRAME};
//! use locker_core::{Message, OpId};
//!
//! let msg = Message::Abort { op: OpId(7), key: b"k".to_vec() };
//! let mut buf = Vec::new();
//! encode_frame(&msg, &mut buf).unwrap();
//! let (decoded, used): (Message, usize) = decode_frame(&buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
//! assert_eq!(decoded, msg);
//! assert_eq!(used, buf.len());
//! ```

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// The version byte this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes before the payload: length and version.
pub const HEADER_LEN: usize = 5;
/// A frame limit that fits the default key and value limits with room to spare.
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;

/// Why bytes could not be read as a frame, or a value could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The announced length is above the limit; the peer is broken or hostile.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversize {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A frame with a length of zero has no version byte.
    #[error("empty frame")]
    Empty,
    /// The peer speaks another protocol version.
    #[error("unknown protocol version {0} (this node speaks {PROTOCOL_VERSION})")]
    UnknownVersion(u8),
    /// The payload is not a valid encoding of the expected type.
    #[error("malformed payload: {0}")]
    Garbage(String),
    /// The payload decoded but left bytes unread.
    #[error("{0} trailing bytes after the payload")]
    TrailingBytes(usize),
}

/// Appends one frame holding `value` to `out`.
pub fn encode_frame<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    let mut buf = core::mem::take(out);
    buf.extend_from_slice(&[0, 0, 0, 0, PROTOCOL_VERSION]);
    // Serializing the crate's own types cannot fail; `out` is restored below.
    *out = postcard::to_extend(value, buf).map_err(|e| WireError::Garbage(e.to_string()))?;
    let len = out.len() - start - 4;
    let len32 = u32::try_from(len).map_err(|_| WireError::Oversize {
        len,
        max: u32::MAX as usize,
    })?;
    out[start..start + 4].copy_from_slice(&len32.to_le_bytes());
    Ok(())
}

/// Reads one frame from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more and
/// call again), or the value and the number of bytes it used. An announced
/// length above `max_frame` is refused before anything is allocated.
pub fn decode_frame<T: DeserializeOwned>(
    buf: &[u8],
    max_frame: usize,
) -> Result<Option<(T, usize)>, WireError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > max_frame {
        return Err(WireError::Oversize {
            len,
            max: max_frame,
        });
    }
    if len == 0 {
        return Err(WireError::Empty);
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    if body[0] != PROTOCOL_VERSION {
        return Err(WireError::UnknownVersion(body[0]));
    }
    let (value, rest) =
        postcard::take_from_bytes(&body[1..]).map_err(|e| WireError::Garbage(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    Ok(Some((value, 4 + len)))
}
