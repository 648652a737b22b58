//! Arbitrary bytes into `decode_frame` for `Message`, `Request` and `Reply`;
//! see `locker_fuzz::checks::check_wire_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use locker_fuzz::checks::{check_wire_decode, MaxAlloc};

#[global_allocator]
static ALLOC: MaxAlloc = MaxAlloc;

fuzz_target!(|data: &[u8]| check_wire_decode(data));
