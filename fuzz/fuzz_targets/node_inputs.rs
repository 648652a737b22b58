//! An arbitrary script of messages, requests and timeouts into one node;
//! see `locker_fuzz::checks::check_node_inputs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use locker_fuzz::checks::check_node_inputs;

fuzz_target!(|data: &[u8]| check_node_inputs(data));
