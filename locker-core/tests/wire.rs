//! Frames: round-trips of every wire type, and typed errors for bad input.

mod support;

use locker_core::wire::{
    decode_frame, encode_frame, WireError, DEFAULT_MAX_FRAME, HEADER_LEN, PROTOCOL_VERSION,
};
use locker_core::{Message, OpId, Reply, Request, RequestId};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use support::strategies::*;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let mut buf = vec![0xAA]; // frames append after existing bytes
    encode_frame(value, &mut buf).unwrap();
    assert_eq!(buf[0], 0xAA);
    let frame = &buf[1..];
    let (decoded, used): (T, usize) = decode_frame(frame, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(&decoded, value);
    assert_eq!(used, frame.len());
    // Every strict prefix is incomplete, never an error or a panic.
    for cut in [0, 1, 3, 4, HEADER_LEN, frame.len() - 1] {
        if cut < frame.len() {
            assert_eq!(
                decode_frame::<T>(&frame[..cut], DEFAULT_MAX_FRAME),
                Ok(None),
                "cut {cut}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_round_trip(msg in message()) {
        round_trip(&msg);
    }

    #[test]
    fn requests_round_trip(req in request(), id in any::<u64>()) {
        round_trip(&(RequestId(id), req));
    }

    #[test]
    fn replies_round_trip(reply in reply(), id in any::<u64>()) {
        round_trip(&(RequestId(id), reply));
    }

    #[test]
    fn two_frames_back_to_back_decode_in_order(a in message(), b in message()) {
        let mut buf = Vec::new();
        encode_frame(&a, &mut buf).unwrap();
        encode_frame(&b, &mut buf).unwrap();
        let (da, used): (Message, usize) = decode_frame(&buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        let (db, used_b): (Message, usize) = decode_frame(&buf[used..], DEFAULT_MAX_FRAME).unwrap().unwrap();
        prop_assert_eq!(da, a);
        prop_assert_eq!(db, b);
        prop_assert_eq!(used + used_b, buf.len());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_frame::<Message>(&bytes, DEFAULT_MAX_FRAME);
        let _ = decode_frame::<(RequestId, Request)>(&bytes, DEFAULT_MAX_FRAME);
        let _ = decode_frame::<(RequestId, Reply)>(&bytes, 64);
    }

    #[test]
    fn decoding_valid_header_with_garbage_body_never_panics(body in proptest::collection::vec(any::<u8>(), 0..128)) {
        let mut buf = ((body.len() + 1) as u32).to_le_bytes().to_vec();
        buf.push(PROTOCOL_VERSION);
        buf.extend_from_slice(&body);
        match decode_frame::<Message>(&buf, DEFAULT_MAX_FRAME) {
            Ok(Some((_, used))) => prop_assert_eq!(used, buf.len()),
            Ok(None) => prop_assert!(false, "a complete frame is never incomplete"),
            Err(e) => prop_assert!(matches!(e, WireError::Garbage(_) | WireError::TrailingBytes(_)), "{e:?}"),
        }
    }
}

#[test]
fn peer_addresses_round_trip_and_earlier_envelopes_keep_their_tags() {
    use locker_core::envelope::{Envelope, Who};
    use locker_core::NodeId;
    // (serde carries no IPv6 scope id or flow label.)
    for addr in [
        "127.0.0.1:7001",
        "0.0.0.0:7001",
        "[::1]:7002",
        "[2001:db8::1]:7003",
    ] {
        round_trip(&Envelope::PeerAddress(addr.parse().unwrap()));
    }
    // The variant was added last: frames of the others are as before.
    let mut hello = Vec::new();
    let who = Who::Peer(NodeId(3));
    encode_frame(
        &Envelope::Hello {
            who,
            nonce: [0; 32],
        },
        &mut hello,
    )
    .unwrap();
    assert_eq!(hello[HEADER_LEN], 0, "Hello's tag");
    let mut welcome = Vec::new();
    encode_frame(&Envelope::Welcome, &mut welcome).unwrap();
    assert_eq!(welcome[HEADER_LEN..], [3], "Welcome's tag");
}

fn frame_of(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_frame(msg, &mut buf).unwrap();
    buf
}

#[test]
fn truncated_input_is_incomplete() {
    let buf = frame_of(&Message::Abort {
        op: OpId(1),
        key: b"key".to_vec(),
    });
    for cut in 0..buf.len() {
        assert_eq!(
            decode_frame::<Message>(&buf[..cut], DEFAULT_MAX_FRAME),
            Ok(None),
            "cut {cut}"
        );
    }
}

#[test]
fn oversize_length_is_refused_before_reading_the_body() {
    // Only the header is present: the limit is checked before waiting for more.
    let buf = u32::MAX.to_le_bytes();
    assert_eq!(
        decode_frame::<Message>(&buf, DEFAULT_MAX_FRAME),
        Err(WireError::Oversize {
            len: u32::MAX as usize,
            max: DEFAULT_MAX_FRAME
        })
    );
    let frame = frame_of(&Message::Abort {
        op: OpId(1),
        key: vec![7; 100],
    });
    let len = frame.len() - 4;
    assert_eq!(
        decode_frame::<Message>(&frame, len - 1),
        Err(WireError::Oversize { len, max: len - 1 })
    );
    assert!(decode_frame::<Message>(&frame, len).unwrap().is_some());
}

#[test]
fn empty_frame_unknown_version_garbage_and_trailing_bytes_are_typed() {
    assert_eq!(
        decode_frame::<Message>(&[0, 0, 0, 0], DEFAULT_MAX_FRAME),
        Err(WireError::Empty)
    );

    let mut frame = frame_of(&Message::SyncRequest);
    frame[4] = PROTOCOL_VERSION + 1;
    assert_eq!(
        decode_frame::<Message>(&frame, DEFAULT_MAX_FRAME),
        Err(WireError::UnknownVersion(PROTOCOL_VERSION + 1))
    );

    // A variant tag far beyond the enum.
    let garbage = [2, 0, 0, 0, PROTOCOL_VERSION, 0x7f];
    assert!(matches!(
        decode_frame::<Message>(&garbage, DEFAULT_MAX_FRAME),
        Err(WireError::Garbage(_))
    ));
    // A body that ends inside the value.
    let mut cut = frame_of(&Message::Abort {
        op: OpId(1),
        key: b"key".to_vec(),
    });
    cut.pop();
    let len = (cut.len() - 4) as u32;
    cut[..4].copy_from_slice(&len.to_le_bytes());
    assert!(matches!(
        decode_frame::<Message>(&cut, DEFAULT_MAX_FRAME),
        Err(WireError::Garbage(_))
    ));

    // Extra bytes inside the frame after a complete value.
    let mut long = frame_of(&Message::SyncRequest);
    long.extend_from_slice(&[1, 2, 3]);
    let len = (long.len() - 4) as u32;
    long[..4].copy_from_slice(&len.to_le_bytes());
    assert_eq!(
        decode_frame::<Message>(&long, DEFAULT_MAX_FRAME),
        Err(WireError::TrailingBytes(3))
    );

    // Bytes after the frame belong to the next one and are not consumed.
    let mut next = frame_of(&Message::SyncRequest);
    let one = next.len();
    next.extend_from_slice(&[9, 9]);
    let (m, used): (Message, usize) = decode_frame(&next, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!((m, used), (Message::SyncRequest, one));
}
