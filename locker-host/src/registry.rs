//! The name registry: names are keys under a reserved prefix.

/// The prefix of registry keys, so names never clash with plain locks.
pub const NAME_PREFIX: &[u8] = b"locker/name/";

/// The key under which `name` is registered.
pub fn name_key(name: &str) -> Vec<u8> {
    let mut key = NAME_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// Whether a read must go to a quorum or may be local.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// The node's local copy; fast, may be stale.
    Dirty,
    /// A quorum read; linearizable.
    Consistent,
}
