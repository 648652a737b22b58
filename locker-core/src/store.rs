//! The entries a master or replica keeps, with an ordered expiry index.
//!
//! Records live in a slab; a hash table maps keys to slots and stores only the
//! slot number, so each key's bytes are kept once. Expiry is a `BTreeSet` of
//! `(expires, slot)`, so finding what is due costs `O(log n)` per entry and
//! nothing scans the whole table.

use core::hash::BuildHasher;
use std::collections::BTreeSet;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

use crate::message::EntryState;
use crate::request::{EntryView, Token};
use crate::time::Time;

/// One entry: live, or a tombstone kept until its expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) key: Box<[u8]>,
    pub(crate) value: Box<[u8]>,
    pub(crate) token: Token,
    pub(crate) revision: u64,
    pub(crate) expires: Time,
    pub(crate) deleted: bool,
}

impl Record {
    pub(crate) fn is_live(&self, now: Time) -> bool {
        !self.deleted && self.expires > now
    }

    pub(crate) fn state(&self, now: Time) -> EntryState {
        EntryState {
            value: self.value.to_vec(),
            token: self.token,
            revision: self.revision,
            remaining: self.expires - now,
        }
    }

    pub(crate) fn view(&self, now: Time) -> EntryView {
        EntryView {
            value: self.value.to_vec(),
            token: self.token,
            remaining: self.expires - now,
        }
    }

    /// Order of states of one key, for idempotent replication: a later tenure
    /// wins, then a release, then a later revision.
    pub(crate) fn version(&self) -> (Token, bool, u64) {
        (self.token, self.deleted, self.revision)
    }
}

pub(crate) struct Store {
    slots: Slab,
    free: Vec<u32>,
    index: HashTable<u32>,
    expiry: BTreeSet<(Time, u32)>,
    hasher: FixedState,
    tombstones: usize,
}

impl Store {
    pub(crate) fn new(seed: u64) -> Store {
        Store {
            slots: Slab::default(),
            free: Vec::new(),
            index: HashTable::new(),
            expiry: BTreeSet::new(),
            hasher: FixedState::with_seed(seed),
            tombstones: 0,
        }
    }

    fn slot_of(&self, key: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        self.index
            .find(hash, |&s| slot_key(slots, s) == key)
            .copied()
    }

    /// The record of `key`, live, tombstone or expired-but-not-yet-removed.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Record> {
        self.slot_of(key)
            .and_then(|s| self.slots[s as usize].as_ref())
    }

    /// The record of `key` if it is live at `now`.
    pub(crate) fn live(&self, key: &[u8], now: Time) -> Option<&Record> {
        self.get(key).filter(|r| r.is_live(now))
    }

    /// Inserts or replaces the record of `record.key`.
    pub(crate) fn put(&mut self, record: Record) {
        match self.slot_of(&record.key) {
            Some(s) => {
                let old = self.slots[s as usize]
                    .replace(record)
                    .expect("indexed slot is full");
                let new = self.slots[s as usize].as_ref().expect("just filled");
                self.tombstones = self.tombstones + new.deleted as usize - old.deleted as usize;
                if old.expires != new.expires {
                    self.expiry.remove(&(old.expires, s));
                    self.expiry.insert((new.expires, s));
                }
            }
            None => {
                let hash = self.hasher.hash_one(&record.key[..]);
                self.tombstones += record.deleted as usize;
                let expires = record.expires;
                let s = match self.free.pop() {
                    Some(s) => {
                        self.slots[s as usize] = Some(record);
                        s
                    }
                    None => {
                        let s = u32::try_from(self.slots.len()).expect("fewer than 2^32 entries");
                        self.slots.push(Some(record));
                        s
                    }
                };
                let (slots, hasher) = (&self.slots, &self.hasher);
                self.index
                    .insert_unique(hash, s, |&t| hasher.hash_one(slot_key(slots, t)));
                self.expiry.insert((expires, s));
            }
        }
    }

    /// Changes the record of `key` in place through `f`, keeping the index right.
    /// The closure must not change the key.
    pub(crate) fn update(&mut self, key: &[u8], f: impl FnOnce(&mut Record)) {
        let Some(s) = self.slot_of(key) else { return };
        let record = self.slots[s as usize]
            .as_mut()
            .expect("indexed slot is full");
        let (old_expires, old_deleted) = (record.expires, record.deleted);
        f(record);
        debug_assert_eq!(&record.key[..], key);
        let (expires, deleted) = (record.expires, record.deleted);
        self.tombstones = self.tombstones + deleted as usize - old_deleted as usize;
        if expires != old_expires {
            self.expiry.remove(&(old_expires, s));
            self.expiry.insert((expires, s));
        }
    }

    /// Removes the record of `key`, if any.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Record> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let entry = self
            .index
            .find_entry(hash, |&s| slot_key(slots, s) == key)
            .ok()?;
        let (s, _) = entry.remove();
        let record = self.slots[s as usize].take().expect("indexed slot is full");
        self.expiry.remove(&(record.expires, s));
        self.tombstones -= record.deleted as usize;
        self.free.push(s);
        Some(record)
    }

    /// Removes every record whose expiry is at or before `now`; returns them.
    pub(crate) fn expire(&mut self, now: Time) -> Vec<Record> {
        let mut removed = Vec::new();
        while let Some(&(expires, s)) = self.expiry.first() {
            if expires > now {
                break;
            }
            let key = self.slots[s as usize]
                .as_ref()
                .expect("indexed slot is full")
                .key
                .clone();
            removed.extend(self.remove(&key));
        }
        removed
    }

    pub(crate) fn next_expiry(&self) -> Option<Time> {
        self.expiry.first().map(|&(t, _)| t)
    }

    /// Live entries plus tombstones.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// All records, sorted by key (deterministic whatever the hasher).
    pub(crate) fn sorted(&self) -> Vec<&Record> {
        let mut all: Vec<&Record> = self.slots.iter().flatten().collect();
        all.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Checks that the index, the slab and the expiry set describe the same records.
    pub(crate) fn check(&self) -> Result<(), String> {
        let full = self.slots.iter().flatten().count();
        if full != self.index.len() || full != self.expiry.len() {
            return Err(format!(
                "store sizes disagree: {full} records, {} indexed, {} in expiry",
                self.index.len(),
                self.expiry.len()
            ));
        }
        let tombstones = self.slots.iter().flatten().filter(|r| r.deleted).count();
        if tombstones != self.tombstones {
            return Err(format!(
                "tombstone count {} != {tombstones}",
                self.tombstones
            ));
        }
        Ok(())
    }
}

/// Slots in fixed-size chunks: growing never copies records and never holds
/// more than one chunk of unused capacity (a `Vec` that doubles would hold
/// up to half of its memory unused).
#[derive(Default)]
struct Slab {
    chunks: Vec<Box<[Option<Record>]>>,
    len: usize,
}

const CHUNK: usize = 1024;

impl Slab {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, record: Option<Record>) {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        let len = self.len;
        self.len += 1;
        self[len] = record;
    }

    fn iter(&self) -> impl Iterator<Item = &Option<Record>> {
        self.chunks.iter().flat_map(|c| c.iter()).take(self.len)
    }
}

impl core::ops::Index<usize> for Slab {
    type Output = Option<Record>;
    fn index(&self, i: usize) -> &Option<Record> {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl core::ops::IndexMut<usize> for Slab {
    fn index_mut(&mut self, i: usize) -> &mut Option<Record> {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

fn slot_key(slots: &Slab, s: u32) -> &[u8] {
    &slots[s as usize]
        .as_ref()
        .expect("indexed slot is full")
        .key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, expires: u64) -> Record {
        Record {
            key: key.as_bytes().into(),
            value: b"v".to_vec().into(),
            token: Token(1),
            revision: 0,
            expires: Time::from_micros(expires),
            deleted: false,
        }
    }

    #[test]
    fn expiry_removes_due_records_in_order() {
        let mut store = Store::new(0);
        store.put(rec("a", 30));
        store.put(rec("b", 10));
        store.put(rec("c", 20));
        let gone: Vec<_> = store
            .expire(Time::from_micros(20))
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(gone, vec![b"b"[..].into(), b"c"[..].into()]);
        assert_eq!(store.len(), 1);
        assert_eq!(store.next_expiry(), Some(Time::from_micros(30)));
        store.check().unwrap();
    }

    #[test]
    fn replacing_moves_the_expiry_and_reuses_slots() {
        let mut store = Store::new(0);
        store.put(rec("a", 10));
        store.update(b"a", |r| {
            r.expires = Time::from_micros(50);
            r.deleted = true;
        });
        assert!(store.expire(Time::from_micros(10)).is_empty());
        assert_eq!(store.tombstones(), 1);
        assert!(store.remove(b"a").is_some());
        store.put(rec("b", 5));
        assert_eq!(store.slots.len(), 1);
        store.check().unwrap();
    }
}
