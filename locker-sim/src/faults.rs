//! Faults as the world applies them, and the fault schedule a seed draws.

use crate::options::SimOptions;
use crate::rng::SimRng;
use crate::schedule::{FaultEvent, FaultKind, Partition, Schedule};

/// One scheduled fault or phase change, as the event queue holds it.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Event `i` of the schedule starts.
    Start(usize),
    /// Event `i` of the schedule ends (partition lifted, node restarted,
    /// burst over).
    End(usize),
    /// Restart a crashed node (after [`Fault::CrashAllMasters`]).
    Restart(usize),
    /// Crash every master at once (scripted).
    CrashAllMasters,
    /// The quiet phase starts: faults off, heal, restart everything.
    QuietStart,
    /// The liveness probe starts.
    Probe,
    /// The stores are recorded for the convergence check.
    Snapshot,
}

fn ms(us: f64) -> u32 {
    (us / 1_000.0).min(u32::MAX as f64) as u32
}

/// Draws the fault phase's schedule from the seed, within the fault kinds
/// `o.faults` allows: partitions one at a time, crashes of storing nodes
/// (with a clock jump at restart when clocks are skewed), pauses.
pub fn draw(rng: &mut SimRng, o: &SimOptions, quiet_at: u64) -> Schedule {
    let mut out = Vec::new();
    let storing = o.masters + o.replicas;
    let n = o.nodes();
    if o.faults.partition {
        let mut t = rng.exp(2e6) as u64;
        while t < quiet_at {
            let p = match rng.range(0, 5) {
                0 => {
                    let mut mask = 0u32;
                    for i in 0..n.min(32) {
                        if rng.chance(0.5) {
                            mask |= 1 << i;
                        }
                    }
                    Partition::Halves(mask)
                }
                1 => Partition::OneWay(rng.range(0, storing as u64) as u8),
                2 => Partition::Isolate(rng.range(0, n as u64) as u8),
                3 => Partition::Minority(rng.range(0, o.masters as u64) as u8),
                _ => Partition::Ring,
            };
            let length = rng.exp(1.5e6) as u64 + 1;
            out.push(FaultEvent {
                at_ms: ms(t as f64),
                for_ms: ms(length as f64).max(1),
                kind: FaultKind::Partition(p),
            });
            t += length + rng.exp(2e6) as u64 + 1;
        }
    }
    if o.faults.crash && storing > 0 {
        let mut t = rng.exp(4e6) as u64;
        while t < quiet_at {
            let node = rng.range(0, storing as u64) as u8;
            let down = rng.range(200_000, 6_000_000);
            let jump_ms = if o.faults.skew {
                rng.range(0, 1 << 30) as u32
            } else {
                0
            };
            out.push(FaultEvent {
                at_ms: ms(t as f64),
                for_ms: ms(down as f64),
                kind: FaultKind::Crash { node, jump_ms },
            });
            t += rng.exp(4e6) as u64 + 1;
        }
    }
    if o.faults.pause {
        let mut t = rng.exp(3e6) as u64;
        while t < quiet_at {
            let node = rng.range(0, n as u64) as u8;
            let length = rng.range(100_000, 3_000_000);
            out.push(FaultEvent {
                at_ms: ms(t as f64),
                for_ms: ms(length as f64),
                kind: FaultKind::Pause(node),
            });
            t += rng.exp(3e6) as u64 + 1;
        }
    }
    Schedule { events: out }
}

/// The directed links `(from, to)` a partition cuts in a cluster of `n`
/// nodes, the first `masters` of them masters and the first `storing`
/// storing.
pub fn links(p: &Partition, n: usize, masters: usize, storing: usize) -> Vec<(usize, usize)> {
    let split = |a: &[usize]| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for x in 0..n {
            for y in 0..n {
                if a.contains(&x) != a.contains(&y) {
                    out.push((x, y));
                }
            }
        }
        out
    };
    match *p {
        Partition::Halves(mask) => {
            let a: Vec<usize> = (0..n).filter(|&i| mask >> (i % 32) & 1 == 1).collect();
            split(&a)
        }
        Partition::OneWay(v) => {
            let victim = v as usize % storing.max(1);
            (0..n)
                .filter(|&x| x != victim)
                .map(|x| (x, victim))
                .collect()
        }
        Partition::Isolate(v) => split(&[v as usize % n.max(1)]),
        Partition::Minority(start) => {
            let minority = masters.saturating_sub(1) / 2;
            let small: Vec<usize> = (0..minority)
                .map(|i| (start as usize + i) % masters.max(1))
                .collect();
            split(&small)
        }
        Partition::Ring => {
            let mut out = Vec::new();
            for a in 0..n {
                for b in 0..n {
                    let d = (a + n - b) % n;
                    if d > 1 && d < n - 1 {
                        out.push((a, b));
                    }
                }
            }
            out
        }
    }
}
