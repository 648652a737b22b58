//! The fault schedule as data: timed fault events (partitions of every shape,
//! heal, crash and restart with a clock jump, process pauses, bursts of loss,
//! duplication, reordering and delay).
//!
//! A run either draws its schedule from the seed (`locker-sim run`) or is
//! given one ([`SimOptions::schedule`], `locker-sim replay --schedule`). The
//! one type serves every generator: [`Schedule`] implements
//! `arbitrary::Arbitrary` (the `cluster_schedule` fuzz target, through
//! [`from_bytes`]), has a proptest strategy ([`strategy`], feature
//! `proptest`) that shrinks by dropping and simplifying events, and a compact
//! text form (`Display` / `FromStr`) that a replay command carries.
//!
//! Node numbers in events are taken modulo the cluster's size when applied
//! (crashes modulo the storing nodes, minority partitions modulo the
//! masters), so every schedule fits every cluster shape and shrinking the
//! shape never invalidates it.

use std::fmt;
use std::str::FromStr;

use arbitrary::{Arbitrary, Unstructured};

use crate::options::{Faults, SimOptions};

/// The shape of a partition.
#[derive(Clone, Debug, PartialEq, Eq, Arbitrary)]
pub enum Partition {
    /// Two sides by a bit mask over node numbers (bit set: first side),
    /// every link between them cut both ways.
    Halves(u32),
    /// Every link into one storing node cut: it is heard but hears nobody.
    OneWay(u8),
    /// One node cut off both ways.
    Isolate(u8),
    /// The largest minority of the masters, from this master on (wrapping),
    /// cut off from everyone else.
    Minority(u8),
    /// Each node hears only its two ring neighbours.
    Ring,
}

/// What a fault event does.
#[derive(Clone, Debug, PartialEq, Eq, Arbitrary)]
pub enum FaultKind {
    /// A partition, lifted after the event's duration.
    Partition(Partition),
    /// Lift every partition now.
    Heal,
    /// Crash a storing node (it forgets everything) and restart it after the
    /// event's duration with its monotonic clock jumped ahead by `jump_ms`
    /// (a reboot is where a monotonic clock may jump; the offset must not
    /// matter).
    Crash {
        /// The node (modulo the storing nodes).
        node: u8,
        /// How far its clock jumps at the restart, in ms.
        jump_ms: u32,
    },
    /// Pause a node's process for the event's duration (modulo all nodes;
    /// client-only nodes pause their holders).
    Pause(u8),
    /// A burst of message loss (30% of messages).
    Loss,
    /// A burst of duplication (30% of messages).
    Dup,
    /// A burst of reordering (up to 50 ms of extra jitter).
    Reorder,
    /// A burst of long-tailed delay (20% of messages).
    Delay,
}

/// One timed fault event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultEvent {
    /// Start, in simulated ms from the start of the run. Events starting at
    /// or after the quiet phase are ignored.
    pub at_ms: u32,
    /// How long it lasts, in ms (ignored by `Heal`). The quiet phase ends
    /// every fault.
    pub for_ms: u32,
    /// What it does.
    pub kind: FaultKind,
}

/// Longest start time and duration the generators produce, in ms.
pub const MAX_MS: u32 = 60_000;

impl<'a> Arbitrary<'a> for FaultEvent {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<FaultEvent> {
        Ok(FaultEvent {
            at_ms: u.int_in_range(0..=MAX_MS)?,
            for_ms: u.int_in_range(1..=6_000)?,
            kind: FaultKind::arbitrary(u)?,
        })
    }
}

/// A whole fault schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Arbitrary)]
pub struct Schedule {
    /// The events, in any order.
    pub events: Vec<FaultEvent>,
}

impl Schedule {
    /// Events that start before the quiet phase (`quiet_ms`).
    pub fn effective(&self, quiet_ms: u32) -> usize {
        self.events.iter().filter(|e| e.at_ms < quiet_ms).count()
    }
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FaultKind::Partition(p) => match p {
                Partition::Halves(m) => write!(f, "halves:{m}")?,
                Partition::OneWay(n) => write!(f, "oneway:{n}")?,
                Partition::Isolate(n) => write!(f, "isolate:{n}")?,
                Partition::Minority(n) => write!(f, "minority:{n}")?,
                Partition::Ring => write!(f, "ring")?,
            },
            FaultKind::Heal => write!(f, "heal")?,
            FaultKind::Crash { node, jump_ms } => write!(f, "crash:{node}:{jump_ms}")?,
            FaultKind::Pause(n) => write!(f, "pause:{n}")?,
            FaultKind::Loss => write!(f, "loss")?,
            FaultKind::Dup => write!(f, "dup")?,
            FaultKind::Reorder => write!(f, "reorder")?,
            FaultKind::Delay => write!(f, "delay")?,
        }
        write!(f, "@{}+{}", self.at_ms, self.for_ms)
    }
}

/// The text form: `none`, or events separated by commas, each
/// `KIND[:ARG[:ARG]]@START_MS+DURATION_MS`, for example
/// `halves:5@1200+800,crash:1:40@3000+1500,loss@0+250`. Shell-safe.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.events.is_empty() {
            return write!(f, "none");
        }
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for FaultEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultEvent, String> {
        let bad = || format!("bad fault event {s:?}");
        let (what, when) = s.split_once('@').ok_or_else(bad)?;
        let (at, dur) = when.split_once('+').ok_or_else(bad)?;
        let at_ms: u32 = at.parse().map_err(|_| bad())?;
        let for_ms: u32 = dur.parse().map_err(|_| bad())?;
        let mut parts = what.split(':');
        let name = parts.next().unwrap_or("");
        let args: Vec<&str> = parts.collect();
        let arg = |i: usize| -> Result<u64, String> {
            args.get(i)
                .ok_or_else(bad)?
                .parse::<u64>()
                .map_err(|_| bad())
        };
        let small = |i: usize| -> Result<u8, String> { u8::try_from(arg(i)?).map_err(|_| bad()) };
        let (kind, arity) = match name {
            "halves" => (
                FaultKind::Partition(Partition::Halves(
                    u32::try_from(arg(0)?).map_err(|_| bad())?,
                )),
                1,
            ),
            "oneway" => (FaultKind::Partition(Partition::OneWay(small(0)?)), 1),
            "isolate" => (FaultKind::Partition(Partition::Isolate(small(0)?)), 1),
            "minority" => (FaultKind::Partition(Partition::Minority(small(0)?)), 1),
            "ring" => (FaultKind::Partition(Partition::Ring), 0),
            "heal" => (FaultKind::Heal, 0),
            "crash" => (
                FaultKind::Crash {
                    node: small(0)?,
                    jump_ms: u32::try_from(arg(1)?).map_err(|_| bad())?,
                },
                2,
            ),
            "pause" => (FaultKind::Pause(small(0)?), 1),
            "loss" => (FaultKind::Loss, 0),
            "dup" => (FaultKind::Dup, 0),
            "reorder" => (FaultKind::Reorder, 0),
            "delay" => (FaultKind::Delay, 0),
            _ => return Err(bad()),
        };
        if args.len() != arity {
            return Err(bad());
        }
        Ok(FaultEvent {
            at_ms,
            for_ms,
            kind,
        })
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Schedule, String> {
        let s = s.trim();
        if s == "none" || s.is_empty() {
            return Ok(Schedule::default());
        }
        let events = s
            .split(',')
            .map(|e| e.trim().parse())
            .collect::<Result<_, _>>()?;
        Ok(Schedule { events })
    }
}

/// Proptest strategies for schedules: events start within `0..max_at_ms`,
/// at most `max_events` of them. Shrinking drops events, then simplifies the
/// rest (earlier, shorter, smaller node numbers, simpler kinds).
#[cfg(feature = "proptest")]
pub fn strategy(
    max_at_ms: u32,
    max_events: usize,
) -> impl proptest::strategy::Strategy<Value = Schedule> {
    use proptest::prelude::*;
    let partition = prop_oneof![
        Just(Partition::Ring),
        any::<u8>().prop_map(Partition::Isolate),
        any::<u8>().prop_map(Partition::OneWay),
        any::<u8>().prop_map(Partition::Minority),
        any::<u32>().prop_map(Partition::Halves),
    ];
    let kind = prop_oneof![
        Just(FaultKind::Heal),
        Just(FaultKind::Loss),
        Just(FaultKind::Dup),
        Just(FaultKind::Reorder),
        Just(FaultKind::Delay),
        any::<u8>().prop_map(FaultKind::Pause),
        (any::<u8>(), 0u32..100_000).prop_map(|(node, jump_ms)| FaultKind::Crash { node, jump_ms }),
        partition.prop_map(FaultKind::Partition),
    ];
    let event =
        (0..max_at_ms.max(1), 1u32..3_000, kind).prop_map(|(at_ms, for_ms, kind)| FaultEvent {
            at_ms,
            for_ms,
            kind,
        });
    proptest::collection::vec(event, 0..=max_events).prop_map(|events| Schedule { events })
}

#[derive(Arbitrary, Debug)]
struct Shape {
    seed: u64,
    masters: u8,
    replicas: u8,
    clients: u8,
    faults: u8,
    tenths_of_secs: u8,
    lease_ms: u16,
    drift_permille: u8,
}

/// The byte after the [`Shape`] that says an explicit schedule follows.
/// Inputs without it draw their schedule from the seed, as the first fuzz
/// inputs (committed as regressions) were written.
const EXPLICIT: u8 = b'S';

/// The seed and options that `bytes` describe: a small cluster shape and
/// fault set within the fault model (majority quorum, drift within the
/// bound, persisted token ceilings, restart quarantine). If the shape is
/// followed by the byte `S`, the rest is an explicit [`Schedule`]; otherwise
/// the schedule is drawn from the seed. The `cluster_schedule` fuzz target
/// and the replay of its committed inputs in this crate's tests share it.
pub fn from_bytes(bytes: &[u8]) -> arbitrary::Result<(u64, SimOptions)> {
    let mut u = Unstructured::new(bytes);
    let s = Shape::arbitrary(&mut u)?;
    let schedule = if u.peek_bytes(1) == Some(&[EXPLICIT]) {
        u.bytes(1)?;
        let mut schedule = Schedule::arbitrary_take_rest(u)?;
        // Fuzz runs are short: fold start times into the run.
        let span = 200 + 100 * (s.tenths_of_secs % 8) as u32;
        for e in &mut schedule.events {
            e.at_ms %= span;
        }
        Some(schedule)
    } else {
        None
    };
    let options = SimOptions {
        masters: 1 + (s.masters % 5) as usize,
        replicas: (s.replicas % 3) as usize,
        clients: 1 + (s.clients % 3) as usize,
        faults: Faults::from_bits(s.faults),
        // Within the configured bound (0.1%).
        drift: Some(0.001 * (s.drift_permille % 101) as f64 / 100.0),
        sim_secs: 0.2 + (s.tenths_of_secs % 8) as f64 / 10.0,
        max_lease_ms: 50 + (s.lease_ms % 2_000) as u64,
        schedule,
        ..SimOptions::default()
    };
    Ok((s.seed, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_round_trips() {
        let text = "halves:5@1200+800,oneway:2@0+1,isolate:9@3+4,minority:1@5+6,ring@7+8,heal@9+0,crash:1:40@3000+1500,pause:4@10+11,loss@0+250,dup@1+2,reorder@3+4,delay@5+6";
        let s: Schedule = text.parse().unwrap();
        assert_eq!(s.events.len(), 12);
        assert_eq!(s.to_string(), text);
        assert_eq!("none".parse::<Schedule>().unwrap(), Schedule::default());
        assert!("crash:1@0+1".parse::<Schedule>().is_err());
        assert!("ring:1@0+1".parse::<Schedule>().is_err());
    }

    #[test]
    fn fuzz_inputs_choose_a_drawn_or_an_explicit_schedule() {
        let shape = [7u8; 16];
        let (_, drawn) = from_bytes(&shape).unwrap();
        assert!(drawn.schedule.is_none());
        let mut explicit = shape.to_vec();
        explicit.push(EXPLICIT);
        explicit.extend((0..64u32).map(|i| (i * 91 % 253) as u8 | 1));
        let (_, o) = from_bytes(&explicit).unwrap();
        let s = o.schedule.clone().expect("an explicit schedule");
        assert!(!s.events.is_empty(), "{s:?} {o:?}");
        let span = (o.sim_secs * 1_000.0).round() as u32;
        assert!(s.events.iter().all(|e| e.at_ms < span));
    }

    #[test]
    fn arbitrary_bytes_make_a_schedule() {
        let bytes: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        let s = Schedule::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        let again: Schedule = s.to_string().parse().unwrap();
        assert_eq!(s, again);
    }
}
