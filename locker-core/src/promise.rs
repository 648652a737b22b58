//! A master's promises: at most one live promise per key, each expiring after
//! the promise timeout. Expiry is ordered, never a scan.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::NodeId;
use crate::message::OpId;
use crate::request::Token;
use crate::time::Time;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Promise {
    pub(crate) op: OpId,
    pub(crate) coordinator: NodeId,
    pub(crate) expires: Time,
    /// The highest token this master reported in the grant: a lock's
    /// commit must carry a larger one.
    pub(crate) highest: Token,
}

#[derive(Default)]
pub(crate) struct Promises {
    by_key: BTreeMap<Box<[u8]>, Promise>,
    expiry: BTreeSet<(Time, Box<[u8]>)>,
}

impl Promises {
    /// The live promise on `key`, if any.
    pub(crate) fn live(&self, key: &[u8], now: Time) -> Option<&Promise> {
        self.by_key.get(key).filter(|p| p.expires > now)
    }

    /// Records a promise; the caller has checked that none is live on `key`.
    pub(crate) fn grant(&mut self, key: &[u8], promise: Promise) {
        self.remove(key);
        self.expiry.insert((promise.expires, key.into()));
        self.by_key.insert(key.into(), promise);
    }

    /// Removes and returns the promise on `key` if it belongs to `op` and is live.
    pub(crate) fn take(&mut self, key: &[u8], op: OpId, now: Time) -> Option<Promise> {
        match self.live(key, now) {
            Some(p) if p.op == op => self.remove(key),
            _ => None,
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Promise> {
        let promise = self.by_key.remove(key)?;
        self.expiry.remove(&(promise.expires, key.into()));
        Some(promise)
    }

    /// Drops every promise due at or before `now`; returns their keys.
    pub(crate) fn expire(&mut self, now: Time) -> Vec<Box<[u8]>> {
        let mut keys = Vec::new();
        while let Some((expires, key)) = self.expiry.first() {
            if *expires > now {
                break;
            }
            let key = key.clone();
            self.remove(&key);
            keys.push(key);
        }
        keys
    }

    pub(crate) fn next_expiry(&self) -> Option<Time> {
        self.expiry.first().map(|(t, _)| *t)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.by_key.len() != self.expiry.len() {
            return Err(format!(
                "{} promises but {} in the expiry index",
                self.by_key.len(),
                self.expiry.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promise(op: u64, expires: u64) -> Promise {
        Promise {
            op: OpId(op),
            coordinator: NodeId(1),
            expires: Time::from_micros(expires),
            highest: Token(0),
        }
    }

    #[test]
    fn a_promise_is_taken_only_by_its_op_while_live() {
        let mut p = Promises::default();
        p.grant(b"k", promise(1, 100));
        assert!(p.take(b"k", OpId(2), Time::ZERO).is_none());
        assert!(p.take(b"k", OpId(1), Time::from_micros(100)).is_none());
        assert!(p.take(b"k", OpId(1), Time::from_micros(99)).is_some());
        assert_eq!(p.len(), 0);
        p.check().unwrap();
    }

    #[test]
    fn expiry_drops_due_promises() {
        let mut p = Promises::default();
        p.grant(b"a", promise(1, 10));
        p.grant(b"b", promise(2, 20));
        p.expire(Time::from_micros(10));
        assert_eq!(p.len(), 1);
        assert_eq!(p.next_expiry(), Some(Time::from_micros(20)));
        p.check().unwrap();
    }
}
