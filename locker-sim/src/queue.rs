//! The world's event queue: events in order of `(instant, insertion)`.
//!
//! A radix heap: the world only schedules at or after the instant it last
//! took out, so an entry waits in the bucket of the highest bit in which its
//! instant differs from the heap's base instant, and moves to a lower bucket
//! at most once per bit. Taking out the earliest costs a few cheap,
//! predictable moves instead of a heap's sift through unpredictable
//! comparisons. Payloads sit in a slab whose storage is reused, so that
//! scheduling allocates nothing in the steady state and only small keys move.
//!
//! The heap moves on to the next instant as soon as one is taken out, and
//! reads that instant's first payload: the read from memory then overlaps
//! with the handling of the event just taken out, which usually ends before
//! it is needed. Whatever that handling schedules before the heap's new base
//! waits, in order, in a short list of its own.

use std::collections::VecDeque;

#[derive(Clone, Copy)]
struct Entry {
    at: u64,
    seq: u64,
    slot: u32,
}

/// Values scheduled at instants; equal instants pop in insertion order.
/// Monotone: an instant before the last one popped counts as that one.
pub struct Queue<T> {
    /// The instant last popped: the earliest an entry may be scheduled at.
    popped: u64,
    /// The heap's base instant (at or after `popped`).
    last: u64,
    /// Entries before `last` (scheduled after the heap moved on), in order.
    early: VecDeque<Entry>,
    /// Entries at `last`, in insertion order.
    front: VecDeque<Entry>,
    /// `buckets[b]`: entries whose instant differs from `last` first in bit
    /// `b` (counting from the top: bit 63 - leading zeros of the XOR).
    buckets: Vec<Vec<Entry>>,
    /// Bit `b` set: `buckets[b]` is not empty.
    nonempty: u64,
    /// A spare vector, swapped in while a bucket is redistributed.
    spare: Vec<Entry>,
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
    len: usize,
    /// Written by the early read of the next payload, so that it stays.
    touched: u64,
}

impl<T> Default for Queue<T> {
    fn default() -> Queue<T> {
        Queue {
            popped: 0,
            last: 0,
            early: VecDeque::new(),
            front: VecDeque::new(),
            buckets: (0..64).map(|_| Vec::new()).collect(),
            nonempty: 0,
            spare: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            len: 0,
            touched: 0,
        }
    }
}

impl<T> Queue<T> {
    /// Schedules `value` at `at`, after everything already scheduled there.
    pub fn push(&mut self, at: u64, value: T) {
        let at = at.max(self.popped);
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(value);
                s
            }
            None => {
                self.slots.push(Some(value));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        let e = Entry {
            at,
            seq: self.seq,
            slot,
        };
        self.len += 1;
        if at == self.last {
            // The latest insertion: it goes after every entry at `last`.
            self.front.push_back(e);
        } else if at < self.last {
            // After every early entry at or before `at` (all inserted before).
            let i = self.early.partition_point(|x| x.at <= at);
            self.early.insert(i, e);
        } else {
            self.file(e);
        }
    }

    fn file(&mut self, e: Entry) {
        let b = 63 - (e.at ^ self.last).leading_zeros();
        self.buckets[b as usize].push(e);
        self.nonempty |= 1 << b;
    }

    /// The earliest value and its instant.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        if self.front.is_empty() {
            self.refill();
        }
        // Early entries are all before `last`, where `front` is.
        let e = match self.early.pop_front() {
            Some(e) => e,
            None => self.front.pop_front()?,
        };
        self.len -= 1;
        self.popped = e.at;
        let value = self.slots[e.slot as usize]
            .take()
            .expect("a queued slot holds its value");
        self.free.push(e.slot);
        if self.front.is_empty() {
            self.refill();
        }
        if let Some(next) = self.early.front().or(self.front.front()) {
            self.touched ^= self.slots[next.slot as usize].is_some() as u64;
        }
        Some((e.at, value))
    }

    /// Moves the heap's base to its earliest instant and that instant's
    /// entries to `front`: the lowest nonempty bucket holds it, and every
    /// other entry of that bucket goes lower.
    fn refill(&mut self) {
        if self.nonempty == 0 {
            return;
        }
        let b = self.nonempty.trailing_zeros() as usize;
        self.nonempty &= !(1 << b);
        let mut moving = std::mem::replace(&mut self.buckets[b], std::mem::take(&mut self.spare));
        self.last = moving
            .iter()
            .map(|e| e.at)
            .min()
            .expect("a nonempty bucket");
        for e in moving.drain(..) {
            if e.at == self.last {
                self.front.push_back(e);
            } else {
                self.file(e);
            }
        }
        self.spare = moving;
        // A bucket mixes entries filed at different times: restore insertion
        // order among those at the same instant.
        if self.front.len() > 1 {
            self.front.make_contiguous().sort_unstable_by_key(|e| e.seq);
        }
    }

    /// Values scheduled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Queue;
    use crate::rng::SimRng;
    use std::collections::BTreeMap;

    /// The same order as a map keyed by `(instant, insertion)`.
    #[test]
    fn pops_in_instant_then_insertion_order() {
        let mut rng = SimRng::new(11);
        let mut q = Queue::default();
        let mut reference = BTreeMap::new();
        let mut seq = 0u64;
        let mut now = 0u64;
        for round in 0..50_000u64 {
            for _ in 0..rng.range(0, 4) {
                // Mostly near and often equal instants, sometimes some
                // milliseconds ahead, sometimes far.
                let at = match rng.range(0, 10) {
                    0 => now + rng.range(0, 1 << 40),
                    1 => now,
                    2 | 3 => now + rng.range(0, 40_000),
                    _ => now + rng.range(0, 50),
                };
                seq += 1;
                q.push(at, round * 10 + seq % 10);
                reference.insert((at, seq), round * 10 + seq % 10);
            }
            if rng.chance(0.6) {
                let got = q.pop();
                let want = reference.pop_first().map(|((at, _), v)| (at, v));
                assert_eq!(got, want);
                if let Some((at, _)) = got {
                    now = at;
                }
            }
            assert_eq!(q.len(), reference.len());
        }
        while let Some(want) = reference.pop_first() {
            assert_eq!(q.pop(), Some((want.0 .0, want.1)));
        }
        assert!(q.is_empty());
    }
}
