//! Lock + release cycles on distinct keys through a 3-master cluster stepped
//! in memory: the cost of the protocol alone, with and without the wire
//! encoding. Throughput is in protocol messages handled.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod support;
use support::Cluster;

const CYCLES: u64 = 1000;

fn cycles(c: &mut Criterion) {
    for encode in [false, true] {
        // Messages per batch of cycles, measured once: the protocol is deterministic.
        let mut probe = Cluster::new(encode);
        let before = probe.delivered;
        run_cycles(&mut probe, 0);
        let messages = probe.delivered - before;

        let mut group = c.benchmark_group(if encode { "encoded" } else { "in_memory" });
        group.throughput(Throughput::Elements(messages));
        group.bench_function("lock_release_1000_keys", |b| {
            let mut cluster = Cluster::new(encode);
            let mut round = 0;
            b.iter(|| {
                round += 1;
                run_cycles(&mut cluster, round);
            });
        });
        group.finish();
    }
}

fn run_cycles(cluster: &mut Cluster, round: u64) {
    for i in 0..CYCLES {
        let key = format!("key-{round}-{i}");
        let token = cluster.lock(key.as_bytes(), Duration::from_secs(30));
        cluster.release(key.as_bytes(), token);
    }
    // Tombstones expire: let the nodes drop them so the store stays small.
    cluster.now = cluster.now + Duration::from_secs(31);
    for node in &mut cluster.nodes {
        node.handle_timeout(cluster.now);
    }
}

criterion_group!(benches, cycles);
criterion_main!(benches);
