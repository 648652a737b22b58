//! What a node keeps in its data directory across restarts: the token
//! ceiling and the last membership it applied, each a small text file
//! replaced atomically (write, sync, rename).

use locker_core::{AppliedMembership, Ballot, Members, NodeId, Token};
use std::io::Write;
use std::path::Path;

const CEILING: &str = "token-ceiling";
const MEMBERSHIP: &str = "membership";

/// The persisted token ceiling, if any.
pub(crate) fn read_ceiling(dir: &Path) -> Option<Token> {
    let text = std::fs::read_to_string(dir.join(CEILING)).ok()?;
    text.trim().parse().ok().map(Token)
}

pub(crate) fn write_ceiling(dir: &Path, token: Token) -> std::io::Result<()> {
    replace(dir, CEILING, &format!("{}\n", token.0))
}

/// The persisted membership, if any: `epoch origin w highest`, then the masters'
/// ids, then the replicas' ids, one line each; then this node's vote on the
/// next epoch: `round node` of the promised ballot, and, if it accepted a
/// change, `round node w` of its ballot, its masters and its replicas.
pub(crate) fn read_membership(dir: &Path) -> Option<AppliedMembership> {
    let text = std::fs::read_to_string(dir.join(MEMBERSHIP)).ok()?;
    let mut lines = text.lines();
    // Files written before token floors have three numbers.
    let (epoch, origin, w, highest) = match numbers(lines.next()?)?[..] {
        [epoch, origin, w] => (epoch, origin, w, 0),
        [epoch, origin, w, highest] => (epoch, origin, w, highest),
        _ => return None,
    };
    let masters = ids(lines.next())?;
    let replicas = ids(lines.next())?;
    let promised = match lines.next() {
        Some(line) => ballot(&numbers(line)?)?,
        None => Ballot::default(),
    };
    let accepted = match lines.next() {
        Some(line) => {
            let head = numbers(line)?;
            let [round, node, w] = head[..] else {
                return None;
            };
            let members = Members {
                masters: ids(lines.next())?,
                replicas: ids(lines.next())?,
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

pub(crate) fn write_membership(dir: &Path, m: &AppliedMembership) -> std::io::Result<()> {
    let mut text = format!(
        "{} {} {} {}\n{}\n{}\n{} {}\n",
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
        text.push_str(&format!(
            "{} {} {}\n{}\n{}\n",
            b.round,
            b.node.0,
            members.w,
            id_line(&members.masters),
            id_line(&members.replicas)
        ));
    }
    replace(dir, MEMBERSHIP, &text)
}

fn id_line(v: &[NodeId]) -> String {
    v.iter()
        .map(|n| n.0.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn ids(line: Option<&str>) -> Option<Vec<NodeId>> {
    Some(
        numbers(line.unwrap_or(""))?
            .into_iter()
            .map(NodeId)
            .collect(),
    )
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

fn replace(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("locker-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_membership(&dir), None);
        let m = AppliedMembership {
            epoch: 7,
            origin: NodeId(2),
            masters: vec![NodeId(1), NodeId(2), NodeId(4)],
            replicas: vec![],
            w: 2,
            highest: Token(99),
            promised: Ballot::default(),
            accepted: None,
        };
        write_membership(&dir, &m).unwrap();
        assert_eq!(read_membership(&dir), Some(m.clone()));
        // With a vote on the next epoch: a promise and an accepted change.
        let ballot = Ballot {
            round: 3,
            node: NodeId(4),
        };
        let voted = AppliedMembership {
            promised: ballot,
            accepted: Some((
                ballot,
                Members {
                    masters: vec![NodeId(1), NodeId(2)],
                    replicas: vec![NodeId(4)],
                    w: 2,
                },
            )),
            ..m
        };
        write_membership(&dir, &voted).unwrap();
        assert_eq!(read_membership(&dir), Some(voted));
        write_ceiling(&dir, Token(2048)).unwrap();
        assert_eq!(read_ceiling(&dir), Some(Token(2048)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
