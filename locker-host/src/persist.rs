//! What a node keeps in its data directory across restarts: its id, the
//! token ceiling and the last membership it applied (with its vote on the
//! next epoch), in one self-validating file, `state`.
//!
//! # Why one checksummed file, replaced atomically
//!
//! A node's safety after a restart rests on this file: the token ceiling
//! keeps fencing tokens increasing, the membership keeps it from voting as a
//! master it no longer is and keeps its Paxos promises. A file that is
//! garbage, empty or cut short must therefore never read as "nothing
//! persisted": every line is named, the last line is a CRC-32 of all the
//! others, and anything that does not check is a [`StateError`] naming the
//! file. Writes go to a temporary file that is synced, renamed over the old
//! one, and the directory synced, so a crash leaves either the old state or
//! the new one. One file (not one per value) means one rename per persist and
//! no moment when the two disagree.
//!
//! Data directories written before this format hold `token-ceiling` and
//! `membership` (plain text, no checksum); they are read strictly and
//! replaced by `state` at the first write.

use locker_core::{AppliedMembership, Ballot, Members, NodeId, Token};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The state file's name in the data directory.
pub const STATE_FILE: &str = "state";
/// The file a running node holds locked, so that no second node (a second
/// process started on the same directory by mistake) uses the directory
/// beside it: two writers would undo each other's ceilings and votes.
const LOCK_FILE: &str = "lock";
const VERSION: u64 = 1;
const HEADER: &str = "# locker node state: written by the node and checked at start; do not edit";
const LEGACY_CEILING: &str = "token-ceiling";
const LEGACY_MEMBERSHIP: &str = "membership";

/// Why the data directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but could not be read (permissions, I/O error).
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a state file this version wrote, or was damaged.
    #[error(
        "{path} is damaged ({why}): restore it from a copy, or, to start this node as one that \
         lost its memory, move it away (the node then waits out its quarantine before voting, and \
         fencing tokens stay increasing only while a majority of the masters keeps its own state)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The directory belongs to another node.
    #[error(
        "{path} belongs to node {found}, not node {expected}: give each node its own data dir"
    )]
    OtherNode {
        /// The file.
        path: PathBuf,
        /// The id in the file.
        found: NodeId,
        /// This node's id.
        expected: NodeId,
    },
    /// Another running node holds the directory.
    #[error(
        "{path} is locked by another running node: give each node its own data dir, or stop the \
         other one first"
    )]
    InUse {
        /// The lock file.
        path: PathBuf,
    },
    /// Writing, syncing or renaming failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Everything a node persists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The last token ceiling the core asked to persist.
    pub ceiling: Option<Token>,
    /// The last membership the core asked to persist.
    pub membership: Option<AppliedMembership>,
}

/// A node's data directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct DataDir {
    dir: PathBuf,
    node: NodeId,
    /// Held locked; the lock goes with the file when it is dropped (or the
    /// process dies).
    _lock: std::fs::File,
}

impl DataDir {
    /// The data directory `dir` of node `node` (created if missing), locked
    /// against any other node.
    pub fn open(dir: &Path, node: NodeId) -> Result<DataDir, StateError> {
        let write_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_error(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(write_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::InUse { path: lock_path })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StateError::Write {
                    path: lock_path,
                    source,
                })
            }
        }
        Ok(DataDir {
            dir: dir.to_path_buf(),
            node,
            _lock: lock,
        })
    }

    /// The state file's path.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// What the directory holds: `None` if this node never wrote to it.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => self.parse(&path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.load_legacy(),
            Err(source) => Err(StateError::Unreadable { path, source }),
        }
    }

    /// Replaces the state file with `state`, durably: when this returns
    /// `Ok`, a crash at any later moment restarts from `state`.
    pub fn store(&self, state: &State) -> Result<(), StateError> {
        let text = render(self.node, state);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let write = |path: &Path| {
            let mut f = std::fs::File::create(path)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write(&tmp).map_err(|source| StateError::Write {
            path: tmp.clone(),
            source,
        })?;
        let path = self.state_path();
        std::fs::rename(&tmp, &path).map_err(|source| StateError::Write {
            path: path.clone(),
            source,
        })?;
        // The rename is durable only once the directory is synced.
        sync_dir(&self.dir).map_err(|source| StateError::Write {
            path: self.dir.clone(),
            source,
        })?;
        for legacy in [LEGACY_CEILING, LEGACY_MEMBERSHIP] {
            let _ = std::fs::remove_file(self.dir.join(legacy));
        }
        Ok(())
    }

    fn parse(&self, path: &Path, bytes: &[u8]) -> Result<State, StateError> {
        let corrupt = |why: String| StateError::Corrupt {
            path: path.to_path_buf(),
            why,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not text".into()))?;
        if text.is_empty() {
            return Err(corrupt("empty".into()));
        }
        let body_end = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
        let (body, last) = text.split_at(body_end);
        let stored = last
            .trim()
            .strip_prefix("crc32 ")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| corrupt("no checksum line at the end: cut short?".into()))?;
        if crc32fast::hash(body.as_bytes()) != stored {
            return Err(corrupt("checksum mismatch".into()));
        }
        let fields = Fields::parse(body).map_err(corrupt)?;
        let version = fields.number("version").map_err(corrupt)?;
        if version != VERSION {
            return Err(corrupt(format!(
                "version {version}, this program reads {VERSION}"
            )));
        }
        let found = NodeId(fields.number("node").map_err(corrupt)?);
        if found != self.node {
            return Err(StateError::OtherNode {
                path: path.to_path_buf(),
                found,
                expected: self.node,
            });
        }
        let state = fields.state().map_err(corrupt)?;
        Ok(state)
    }

    /// The two plain files of earlier versions, read strictly.
    fn load_legacy(&self) -> Result<Option<State>, StateError> {
        let ceiling_path = self.dir.join(LEGACY_CEILING);
        let membership_path = self.dir.join(LEGACY_MEMBERSHIP);
        let ceiling = read_if_present(&ceiling_path)?
            .map(|text| {
                text.trim()
                    .parse()
                    .map(Token)
                    .map_err(|_| StateError::Corrupt {
                        path: ceiling_path.clone(),
                        why: "not a token".into(),
                    })
            })
            .transpose()?;
        let membership = read_if_present(&membership_path)?
            .map(|text| {
                legacy_membership(&text).ok_or_else(|| StateError::Corrupt {
                    path: membership_path.clone(),
                    why: "not a membership".into(),
                })
            })
            .transpose()?;
        if ceiling.is_none() && membership.is_none() {
            return Ok(None);
        }
        Ok(Some(State {
            ceiling,
            membership,
        }))
    }
}

fn read_if_present(path: &Path) -> Result<Option<String>, StateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Unreadable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for syncing here; the rename is as
    // durable as the platform makes it.
    Ok(())
}

/// The file's text: named lines, then the checksum of all of them.
fn render(node: NodeId, state: &State) -> String {
    let mut t = format!("{HEADER}\nversion {VERSION}\nnode {}\n", node.0);
    if let Some(c) = state.ceiling {
        let _ = writeln!(t, "ceiling {}", c.0);
    }
    if let Some(m) = &state.membership {
        let _ = writeln!(
            t,
            "epoch {}\norigin {}\nw {}\nhighest {}\nmasters {}\nreplicas {}\npromised {} {}",
            m.epoch,
            m.origin.0,
            m.w,
            m.highest.0,
            id_line(&m.masters),
            id_line(&m.replicas),
            m.promised.round,
            m.promised.node.0,
        );
        if let Some((b, members)) = &m.accepted {
            let _ = writeln!(
                t,
                "accepted {} {}\naccepted-w {}\naccepted-masters {}\naccepted-replicas {}",
                b.round,
                b.node.0,
                members.w,
                id_line(&members.masters),
                id_line(&members.replicas),
            );
        }
    }
    let crc = crc32fast::hash(t.as_bytes());
    let _ = writeln!(t, "crc32 {crc:08x}");
    t
}

/// The named lines of a state file.
struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    fn parse(body: &'a str) -> Result<Fields<'a>, String> {
        let mut fields = Vec::new();
        for line in body.lines() {
            if line.starts_with('#') {
                continue;
            }
            let (name, value) = line.split_once(' ').unwrap_or((line, ""));
            if fields.iter().any(|(n, _)| *n == name) {
                return Err(format!("{name} given twice"));
            }
            fields.push((name, value));
        }
        Ok(Fields(fields))
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn numbers(&self, name: &str) -> Result<Vec<u64>, String> {
        let value = self.get(name).ok_or_else(|| format!("no {name} line"))?;
        numbers(value).ok_or_else(|| format!("bad {name} line"))
    }

    fn number(&self, name: &str) -> Result<u64, String> {
        match self.numbers(name)?[..] {
            [n] => Ok(n),
            _ => Err(format!("bad {name} line")),
        }
    }

    fn ids(&self, name: &str) -> Result<Vec<NodeId>, String> {
        Ok(self.numbers(name)?.into_iter().map(NodeId).collect())
    }

    fn ballot(&self, name: &str) -> Result<Ballot, String> {
        ballot(&self.numbers(name)?).ok_or_else(|| format!("bad {name} line"))
    }

    fn quorum(&self, name: &str) -> Result<usize, String> {
        usize::try_from(self.number(name)?).map_err(|_| format!("bad {name} line"))
    }

    fn state(&self) -> Result<State, String> {
        let ceiling = match self.get("ceiling") {
            Some(_) => Some(Token(self.number("ceiling")?)),
            None => None,
        };
        let membership = match self.get("epoch") {
            None => None,
            Some(_) => {
                let accepted = match self.get("accepted") {
                    None => None,
                    Some(_) => Some((
                        self.ballot("accepted")?,
                        Members {
                            masters: self.ids("accepted-masters")?,
                            replicas: self.ids("accepted-replicas")?,
                            w: self.quorum("accepted-w")?,
                        },
                    )),
                };
                Some(AppliedMembership {
                    epoch: self.number("epoch")?,
                    origin: NodeId(self.number("origin")?),
                    w: self.quorum("w")?,
                    highest: Token(self.number("highest")?),
                    masters: self.ids("masters")?,
                    replicas: self.ids("replicas")?,
                    promised: self.ballot("promised")?,
                    accepted,
                })
            }
        };
        Ok(State {
            ceiling,
            membership,
        })
    }
}

/// The legacy `membership` file: `epoch origin w highest`, the masters' ids,
/// the replicas' ids, one line each; then `round node` of the promised
/// ballot, and, if it accepted a change, `round node w` of its ballot, its
/// masters and its replicas.
fn legacy_membership(text: &str) -> Option<AppliedMembership> {
    let mut lines = text.lines();
    let (epoch, origin, w, highest) = match numbers(lines.next()?)?[..] {
        [epoch, origin, w] => (epoch, origin, w, 0),
        [epoch, origin, w, highest] => (epoch, origin, w, highest),
        _ => return None,
    };
    let masters = ids(lines.next()?)?;
    let replicas = ids(lines.next()?)?;
    let promised = match lines.next() {
        Some(line) => ballot(&numbers(line)?)?,
        None => Ballot::default(),
    };
    let accepted = match lines.next() {
        Some(line) => {
            let [round, node, w] = numbers(line)?[..] else {
                return None;
            };
            let members = Members {
                masters: ids(lines.next()?)?,
                replicas: ids(lines.next()?)?,
                w: usize::try_from(w).ok()?,
            };
            Some((ballot(&[round, node])?, members))
        }
        None => None,
    };
    Some(AppliedMembership {
        epoch,
        origin: NodeId(origin),
        w: usize::try_from(w).ok()?,
        highest: Token(highest),
        masters,
        replicas,
        promised,
        accepted,
    })
}

fn id_line(v: &[NodeId]) -> String {
    v.iter()
        .map(|n| n.0.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn ids(line: &str) -> Option<Vec<NodeId>> {
    Some(numbers(line)?.into_iter().map(NodeId).collect())
}

fn ballot(numbers: &[u64]) -> Option<Ballot> {
    let [round, node] = numbers[..] else {
        return None;
    };
    Some(Ballot {
        round,
        node: NodeId(node),
    })
}

fn numbers(line: &str) -> Option<Vec<u64>> {
    line.split_whitespace().map(|n| n.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "locker-persist-{name}-{}-{:x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn voted() -> AppliedMembership {
        let ballot = Ballot {
            round: 3,
            node: NodeId(4),
        };
        AppliedMembership {
            epoch: 7,
            origin: NodeId(2),
            masters: vec![NodeId(1), NodeId(2), NodeId(4)],
            replicas: vec![],
            w: 2,
            highest: Token(99),
            promised: ballot,
            accepted: Some((
                ballot,
                Members {
                    masters: vec![NodeId(1), NodeId(2)],
                    replicas: vec![NodeId(4)],
                    w: 2,
                },
            )),
        }
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let tmp = TempDir::new("round-trip");
        let dir = DataDir::open(&tmp.0, NodeId(1)).unwrap();
        assert_eq!(dir.load().unwrap(), None, "a new directory holds nothing");
        for state in [
            State::default(),
            State {
                ceiling: Some(Token(2048)),
                membership: None,
            },
            State {
                ceiling: Some(Token(4096)),
                membership: Some(AppliedMembership {
                    accepted: None,
                    ..voted()
                }),
            },
            State {
                ceiling: None,
                membership: Some(voted()),
            },
        ] {
            dir.store(&state).unwrap();
            assert_eq!(dir.load().unwrap(), Some(state));
        }
    }

    #[test]
    fn damaged_files_are_errors_that_name_the_file() {
        let tmp = TempDir::new("damaged");
        let dir = DataDir::open(&tmp.0, NodeId(1)).unwrap();
        let state = State {
            ceiling: Some(Token(2048)),
            membership: Some(voted()),
        };
        dir.store(&state).unwrap();
        let good = std::fs::read(dir.state_path()).unwrap();
        let mut flipped = good.clone();
        let at = flipped.iter().position(|b| *b == b'2').unwrap();
        flipped[at] = b'3';
        let cut = good[..good.len() / 2].to_vec();
        for (what, bytes) in [
            ("empty", Vec::new()),
            ("garbage", b"\xff\xfe garbage".to_vec()),
            ("cut short", cut),
            ("one digit changed", flipped),
            ("text", b"2048\n".to_vec()),
        ] {
            std::fs::write(dir.state_path(), &bytes).unwrap();
            match dir.load() {
                Err(e @ StateError::Corrupt { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(&dir.state_path().display().to_string()),
                        "{what}: {msg}"
                    );
                }
                other => panic!("{what}: read as {other:?}"),
            }
        }
    }

    #[test]
    fn a_directory_in_use_is_refused_until_it_is_free() {
        let tmp = TempDir::new("in-use");
        let first = DataDir::open(&tmp.0, NodeId(1)).unwrap();
        let err = DataDir::open(&tmp.0, NodeId(1)).unwrap_err();
        assert!(matches!(err, StateError::InUse { .. }), "{err}");
        drop(first);
        DataDir::open(&tmp.0, NodeId(1)).unwrap();
    }

    #[test]
    fn a_directory_of_another_node_is_refused() {
        let tmp = TempDir::new("other-node");
        let first = DataDir::open(&tmp.0, NodeId(1)).unwrap();
        first.store(&State::default()).unwrap();
        drop(first);
        let err = DataDir::open(&tmp.0, NodeId(2))
            .unwrap()
            .load()
            .unwrap_err();
        assert!(matches!(err, StateError::OtherNode { .. }), "{err}");
    }

    #[test]
    fn legacy_files_are_read_strictly_and_replaced() {
        let tmp = TempDir::new("legacy");
        std::fs::create_dir_all(&tmp.0).unwrap();
        std::fs::write(tmp.0.join(LEGACY_CEILING), "2048\n").unwrap();
        std::fs::write(
            tmp.0.join(LEGACY_MEMBERSHIP),
            "7 2 2 99\n1 2 4\n\n3 4\n3 4 2\n1 2\n4\n",
        )
        .unwrap();
        let dir = DataDir::open(&tmp.0, NodeId(1)).unwrap();
        let state = dir.load().unwrap().unwrap();
        assert_eq!(
            state,
            State {
                ceiling: Some(Token(2048)),
                membership: Some(voted()),
            }
        );
        dir.store(&state).unwrap();
        assert!(!tmp.0.join(LEGACY_CEILING).exists());
        assert_eq!(dir.load().unwrap(), Some(state));
        std::fs::write(tmp.0.join(STATE_FILE), "").unwrap();
        std::fs::remove_file(tmp.0.join(STATE_FILE)).unwrap();
        std::fs::write(tmp.0.join(LEGACY_CEILING), "garbage").unwrap();
        assert!(matches!(dir.load(), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn a_failed_write_is_an_error() {
        let tmp = TempDir::new("unwritable");
        let dir = DataDir::open(&tmp.0, NodeId(1)).unwrap();
        // A regular file where the directory was: every write fails, even as root.
        std::fs::remove_dir_all(&tmp.0).unwrap();
        std::fs::write(&tmp.0, b"not a directory").unwrap();
        let err = dir.store(&State::default()).unwrap_err();
        assert!(matches!(err, StateError::Write { .. }), "{err}");
        std::fs::remove_file(&tmp.0).unwrap();
    }
}
