//! Bytes allocated per held lease on a master, beyond the key and value
//! bytes: feed one master the prepares and commits of N locks and compare its
//! heap before and after (outputs are drained and dropped, so they net out).
//!
//! `cargo bench -p locker-core --bench lease_memory`

use std::alloc::System;
use std::time::Duration;

use locker_core::{Config, Expect, Message, Node, NodeId, OpId, Time, Token, Write};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const VALUE: &[u8] = b"holder";

fn main() {
    let masters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let coordinator = NodeId(9);
    for leases in [10_000u64, 100_000, 1_000_000] {
        let keys: Vec<Vec<u8>> = (0..leases)
            .map(|i| format!("lease-{i:08}").into_bytes())
            .collect();
        let mut config = Config::new(masters[0], masters.clone(), vec![]);
        config.max_lease = Duration::from_secs(3600);
        let mut master = Node::new(config, Time::ZERO).unwrap();
        let mut now = Time::from_millis(1);
        let region = Region::new(GLOBAL);
        for (i, key) in keys.iter().enumerate() {
            let op = OpId(i as u64);
            let prepare = Message::Prepare {
                op,
                epoch: 0,
                key: key.clone(),
                expect: Expect::Absent,
                watch: false,
            };
            master.handle_message(now, coordinator, prepare);
            let write = Write::Create {
                value: VALUE.to_vec(),
                lease: Duration::from_secs(3600),
                token: Token(i as u64 + 1),
            };
            let commit = Message::Commit {
                op,
                key: key.clone(),
                write,
            };
            master.handle_message(now, coordinator, commit);
            while master.poll_output().is_some() {}
            // Spread expiry times as real traffic would.
            now = now + Duration::from_micros(7);
        }
        let stats = region.change();
        // stats_alloc already folds reallocations into these two counts.
        let net = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
        assert_eq!(master.summary(now).leases as u64, leases);
        let payload = keys.iter().map(|k| k.len() + VALUE.len()).sum::<usize>() as i64;
        let per_lease = (net - payload) as f64 / leases as f64;
        println!(
            "{leases:>9} held leases: {net:>11} bytes, {payload:>9} of keys and values, {per_lease:.1} bytes per lease beyond them"
        );
    }
}
