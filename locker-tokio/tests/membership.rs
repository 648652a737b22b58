//! Membership changes on `locker serve` processes through the command line:
//! a brand-new node replaces a master, and the links follow.

use serde_json::Value;
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{cli, free_addr, masters_list};

/// The longest lease the nodes grant: it sets how long a node that a
/// change makes a master stays quarantined.
const MAX_LEASE_MS: &str = "3000";

/// How long any awaited state may take to show, on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// Every `locker serve` argument of a node (one place, so that a new
/// start-up flag is added once).
/// `serve`'s arguments for node `id`: its data dir is `data`, and the
/// first masters (1 to 3) bootstrap the new cluster; a node that joins it
/// later does not.
fn serve_args(
    id: u64,
    listen: SocketAddr,
    masters: &str,
    secret: &Path,
    data: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--id",
        &id.to_string(),
        "--listen",
        &listen.to_string(),
        "--masters",
        masters,
        "--max-lease-ms",
        MAX_LEASE_MS,
        "--secret-file",
        &secret.display().to_string(),
        "--data-dir",
        &data.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    if id <= 3 {
        args.push("--bootstrap".into());
    }
    args
}

/// A test's directory: the secret and the nodes' logs.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let dir = std::env::temp_dir().join(format!("locker-membership-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Unique, so a node of a test running beside this one never answers.
        let secret = format!("membership {}\n", std::process::id());
        std::fs::write(dir.join("secret"), secret).unwrap();
        Dir(dir)
    }

    fn secret(&self) -> PathBuf {
        self.0.join("secret")
    }
}

/// The `serve` processes, by node id; killed when dropped.
#[derive(Default)]
struct Nodes(Vec<(u64, Child)>);

impl Nodes {
    /// Starts node `id` on `listen` with these masters (ID=ADDR,...) and
    /// waits until it answers; false if it exited first (its port was taken
    /// after it was found free) or never answered.
    fn spawn(&mut self, dir: &Dir, id: u64, listen: SocketAddr, masters: &str) -> bool {
        let log = std::fs::File::create(dir.0.join(format!("node-{id}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_locker"))
            .args(serve_args(
                id,
                listen,
                masters,
                &dir.secret(),
                // One per attempt: a port taken meanwhile means a new start.
                &dir.0.join(format!("n{id}-{}", listen.port())),
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let t = Instant::now();
        while cli(listen, &dir.secret(), &["status"]).0 != 0 {
            if child.try_wait().unwrap().is_some() || t.elapsed() > PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.0.push((id, child));
        true
    }

    /// Starts masters 1, 2 and 3 on free loopback ports: their addresses
    /// and the `--masters` list.
    fn start_masters(&mut self, dir: &Dir) -> (Vec<SocketAddr>, String) {
        for _ in 0..5 {
            let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
            let masters = masters_list(&addrs);
            let all = (1..=3).all(|id| self.spawn(dir, id, addrs[id as usize - 1], &masters));
            if all {
                return (addrs, masters);
            }
            for id in 1..=3 {
                self.kill(id);
            }
        }
        panic!("could not start three masters; logs in {}", dir.0.display());
    }

    /// Starts node `id` on a free loopback port with these masters.
    fn start(&mut self, dir: &Dir, id: u64, masters: &str) -> SocketAddr {
        for _ in 0..5 {
            let listen = free_addr();
            if self.spawn(dir, id, listen, masters) {
                return listen;
            }
        }
        panic!("node {id} never answered; logs in {}", dir.0.display());
    }

    /// Stops node `id` with SIGKILL, if it runs.
    fn kill(&mut self, id: u64) {
        if let Some(i) = self.0.iter().position(|(n, _)| *n == id) {
            let (_, mut child) = self.0.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` on `node`'s status until it holds.
fn wait_status(node: SocketAddr, secret: &Path, what: &str, check: impl Fn(&Value) -> bool) {
    let t = Instant::now();
    loop {
        let (code, v) = cli(node, secret, &["status"]);
        if code == 0 && check(&v) {
            return;
        }
        assert!(t.elapsed() < PATIENCE, "{what}; last status: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The peers a status lists and whether every one is up.
fn peers(status: &Value) -> (Vec<String>, bool) {
    let map = status["peers"].as_object().cloned().unwrap_or_default();
    let all_up = map.values().all(|s| s == "up");
    (map.keys().cloned().collect(), all_up)
}

/// Locks and releases `door` through `node`; returns the token.
fn lock_and_release(node: SocketAddr, secret: &Path, value: &str) -> u64 {
    let lock = [
        "lock",
        "door",
        value,
        "--lease-ms",
        "2000",
        "--wait-ms",
        "5000",
    ];
    let (code, v) = cli(node, secret, &lock);
    assert_eq!(code, 0, "lock through {node}: {v}");
    let token = v["token"].as_u64().unwrap();
    let release = ["release", "door", value, "--token", &token.to_string()];
    let (code, v) = cli(node, secret, &release);
    assert_eq!(code, 0, "release through {node}: {v}");
    token
}

#[test]
fn set_nodes_brings_in_a_new_node_and_the_links_follow() {
    let dir = Dir::new();
    let secret = dir.secret();
    let mut nodes = Nodes::default();
    let (addrs, masters) = nodes.start_masters(&dir);
    let [one, two, three] = [addrs[0], addrs[1], addrs[2]];
    for node in [one, two, three] {
        wait_status(node, &secret, "links between the masters", |v| {
            let (peers, up) = peers(v);
            peers.len() == 2 && up
        });
    }
    let before = lock_and_release(one, &secret, "before");

    // set-w: a step that keeps every old and new quorum meeting is
    // taken; one that does not is refused.
    assert_eq!(
        cli(two, &secret, &["set-w", "3"]),
        (0, serde_json::json!({"ok": true}))
    );
    assert_eq!(cli(two, &secret, &["set-w", "2"]).0, 0);
    let (code, v) = cli(two, &secret, &["set-w", "1"]);
    assert_eq!((code, v["ok"].as_bool()), (1, Some(false)), "{v}");
    let (code, v) = cli(two, &secret, &["set-nodes"]);
    assert_eq!(
        (code, &v),
        (2, &Value::Null),
        "no --masters is a usage error"
    );

    // Node 4 knows the masters; none of them knows it.
    let four = nodes.start(&dir, 4, &masters);
    wait_status(four, &secret, "node 4 starts as a client", |v| {
        v["role"] == "client"
    });
    let (code, v) = cli(two, &secret, &["set-nodes", "--masters", "2,3,4"]);
    assert_eq!(
        (code, &v),
        (0, &serde_json::json!({"ok": true})),
        "set-nodes: {v}"
    );
    for (id, node) in [(2, two), (3, three), (4, four)] {
        wait_status(
            node,
            &secret,
            &format!("node {id} has the new members"),
            |v| v["masters"] == serde_json::json!([2, 3, 4]) && v["role"] == "master",
        );
    }
    wait_status(one, &secret, "node 1 learns it is no master", |v| {
        v["role"] == "client"
    });

    nodes.kill(1);
    for (id, node) in [(2, two), (3, three), (4, four)] {
        wait_status(
            node,
            &secret,
            &format!("node {id} links to the other members only, all up"),
            |v| {
                let (peers, up) = peers(v);
                let others: Vec<String> = [2, 3, 4]
                    .into_iter()
                    .filter(|&p| p != id)
                    .map(|p| format!("n{p}"))
                    .collect();
                peers == others && up
            },
        );
    }
    let mut last = before;
    for (id, node) in [(2, two), (3, three), (4, four)] {
        let token = lock_and_release(node, &secret, &format!("via {id}"));
        assert!(token > last, "token {token} through node {id} after {last}");
        last = token;
    }

    // Once out of quarantine, node 4 votes: with node 2 gone too, nodes 3
    // and 4 are a quorum.
    wait_status(four, &secret, "node 4 leaves its quarantine", |v| {
        v["recovering"] == false
    });
    nodes.kill(2);
    for (id, node) in [(3, three), (4, four)] {
        let token = lock_and_release(node, &secret, &format!("late via {id}"));
        assert!(token > last, "token {token} through node {id} after {last}");
        last = token;
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir.0);
}
