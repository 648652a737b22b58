//! The fault schedule: partitions of every shape, crashes and restarts,
//! process pauses, all drawn from the seed before the run starts.

use crate::options::SimOptions;
use crate::rng::SimRng;

/// One scheduled fault or phase change.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Cut every link between two sides, both ways.
    Split(Vec<usize>, Vec<usize>),
    /// Cut these directed links (one-way and ring partitions).
    Cut(Vec<(usize, usize)>),
    /// Restore every link.
    Heal,
    /// Crash a node: it loses all memory.
    Crash(usize),
    /// Restart a crashed node.
    Restart(usize),
    /// Pause a node's process for this many µs.
    Pause(usize, u64),
    /// Crash every master at once (scripted).
    CrashAllMasters,
    /// The quiet phase starts: faults off, heal, restart everything.
    QuietStart,
    /// The liveness probe starts.
    Probe,
    /// The stores are recorded for the convergence check.
    Snapshot,
}

/// Draws the fault phase's schedule.
pub fn schedule(rng: &mut SimRng, o: &SimOptions, quiet_at: u64) -> Vec<(u64, Fault)> {
    let mut out = Vec::new();
    let storing = o.masters + o.replicas;
    let n = o.nodes();
    if let Some(at) = o.crash_all_masters_at {
        out.push(((at * 1e6) as u64, Fault::CrashAllMasters));
    }
    if !o.isolate_forever.is_empty() {
        out.push((0, Fault::Heal));
    }
    if o.faults.partition {
        let mut t = rng.exp(2e6) as u64;
        while t < quiet_at {
            let f = match rng.range(0, 5) {
                0 => {
                    let (a, b): (Vec<usize>, Vec<usize>) = (0..n).partition(|_| rng.chance(0.5));
                    Fault::Split(a, b)
                }
                1 => {
                    let victim = rng.range(0, storing as u64) as usize;
                    let links = (0..n)
                        .filter(|&x| x != victim)
                        .map(|x| (x, victim))
                        .collect();
                    Fault::Cut(links)
                }
                2 => {
                    let victim = rng.range(0, n as u64) as usize;
                    let rest: Vec<usize> = (0..n).filter(|&x| x != victim).collect();
                    Fault::Split(vec![victim], rest)
                }
                3 => {
                    let minority = o.masters.saturating_sub(1) / 2;
                    let start = rng.range(0, o.masters as u64) as usize;
                    let small: Vec<usize> =
                        (0..minority).map(|i| (start + i) % o.masters).collect();
                    let big: Vec<usize> = (0..n).filter(|x| !small.contains(x)).collect();
                    Fault::Split(small, big)
                }
                _ => {
                    let mut links = Vec::new();
                    for a in 0..n {
                        for b in 0..n {
                            let d = (a + n - b) % n;
                            if d > 1 && d < n - 1 {
                                links.push((a, b));
                            }
                        }
                    }
                    Fault::Cut(links)
                }
            };
            out.push((t, f));
            t += rng.exp(1.5e6) as u64 + 1;
            out.push((t, Fault::Heal));
            t += rng.exp(2e6) as u64 + 1;
        }
    }
    if o.faults.crash && storing > 0 {
        let mut t = rng.exp(4e6) as u64;
        while t < quiet_at {
            let victim = rng.range(0, storing as u64) as usize;
            out.push((t, Fault::Crash(victim)));
            let back = t + rng.range(200_000, 6_000_000);
            out.push((back, Fault::Restart(victim)));
            t += rng.exp(4e6) as u64 + 1;
        }
    }
    if o.faults.pause {
        let mut t = rng.exp(3e6) as u64;
        while t < quiet_at {
            let victim = rng.range(0, n as u64) as usize;
            out.push((t, Fault::Pause(victim, rng.range(100_000, 3_000_000))));
            t += rng.exp(3e6) as u64 + 1;
        }
    }
    out
}
