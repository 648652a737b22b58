//! Real clusters on loopback: in-process nodes, and `locker serve` processes.

use locker_core::{Config, NodeId, OpError};
use locker_tokio::{Client, Consistency, Error, LeaseState, LocalNode, NodeOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const SECRET: &[u8] = b"test secret";

struct Cluster {
    nodes: Vec<Option<LocalNode>>,
    addrs: HashMap<NodeId, SocketAddr>,
    masters: Vec<NodeId>,
    replicas: Vec<NodeId>,
}

impl Cluster {
    async fn start(masters: u64, replicas: u64) -> Cluster {
        let ms: Vec<NodeId> = (1..=masters).map(NodeId).collect();
        let rs: Vec<NodeId> = (masters + 1..=masters + replicas).map(NodeId).collect();
        let mut listeners = Vec::new();
        let mut addrs = HashMap::new();
        for id in ms.iter().chain(&rs) {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.insert(*id, l.local_addr().unwrap());
            listeners.push((*id, l));
        }
        let mut c = Cluster {
            nodes: Vec::new(),
            addrs,
            masters: ms,
            replicas: rs,
        };
        for (id, l) in listeners {
            let node = c.start_node(id, l, false).await;
            c.nodes.push(Some(node));
        }
        c.wait_links().await;
        c
    }

    async fn start_node(&self, id: NodeId, l: TcpListener, restarted: bool) -> LocalNode {
        let mut config = Config::new(id, self.masters.clone(), self.replicas.clone());
        config.seed = rand_seed(id);
        config.max_lease = Duration::from_secs(5);
        let mut opts = NodeOptions::new(config, self.addrs.clone());
        opts.secret = Some(SECRET.to_vec());
        opts.restarted = restarted;
        LocalNode::start(l, opts).await.unwrap()
    }

    async fn wait_links(&self) {
        let t = Instant::now();
        'outer: while t.elapsed() < Duration::from_secs(5) {
            for n in self.nodes.iter().flatten() {
                if !n
                    .client()
                    .status()
                    .await
                    .unwrap()
                    .links
                    .iter()
                    .all(|(_, up)| *up)
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue 'outer;
                }
            }
            return;
        }
    }

    fn client(&self, i: usize) -> Client {
        self.nodes[i]
            .as_ref()
            .unwrap()
            .client()
            .with_wait(Duration::from_millis(500))
    }

    async fn remote(&self, i: usize) -> Client {
        let addr = self.addrs[&NodeId(i as u64 + 1)];
        Client::connect(addr, Some(SECRET))
            .await
            .unwrap()
            .with_wait(Duration::from_millis(500))
    }

    fn kill(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown();
        }
    }
}

fn rand_seed(id: NodeId) -> u64 {
    id.0 * 7919 + std::process::id() as u64
}

fn refused(r: Result<impl std::fmt::Debug, Error>) -> OpError {
    match r {
        Err(Error::Refused(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

macro_rules! bounded {
    ($secs:expr, $body:expr) => {
        tokio::time::timeout(Duration::from_secs($secs), $body)
            .await
            .expect("test took too long")
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_lockers_get_one_winner_and_increasing_tokens() {
    bounded!(20, async {
        let c = Cluster::start(3, 0).await;
        let mut tasks = Vec::new();
        for i in 0..3 {
            let client = c.remote(i).await;
            tasks.push(tokio::spawn(async move {
                client
                    .lock("k", format!("v{i}"), Duration::from_secs(3))
                    .await
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            if let Ok(h) = t.await.unwrap() {
                winners.push(h);
            }
        }
        assert_eq!(winners.len(), 1, "exactly one locker wins");
        let client = c.remote(0).await;
        let v = client.read("k").await.unwrap().unwrap();
        assert_eq!(v.token, winners[0].token);
        let holder = String::from_utf8(v.value).unwrap();
        assert_eq!(
            refused(client.release("k", "nobody", None).await),
            OpError::NotOwner
        );
        client
            .release("k", &holder, Some(winners[0].token))
            .await
            .unwrap();
        let again = client
            .lock("k", "next", Duration::from_secs(3))
            .await
            .unwrap();
        assert!(again.token > winners[0].token);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_extend_expiry_and_waits() {
    bounded!(20, async {
        let c = Cluster::start(3, 1).await;
        let client = c.remote(0).await;
        let h = client
            .lock("k", "a", Duration::from_millis(600))
            .await
            .unwrap();
        assert!(h.deadline <= Instant::now() + Duration::from_millis(600));
        assert_eq!(client.update("k", "a", "b").await.unwrap(), h.token);
        assert_eq!(
            refused(client.update("k", "a", "c").await),
            OpError::NotOwner
        );
        let e = client
            .extend("k", "b", Duration::from_millis(600), Some(h.token))
            .await
            .unwrap();
        assert_eq!(e.token, h.token);
        // The replica catches up (it may first see the value before the
        // update, pushed in between), then sees the entry expire.
        let replica = c.remote(3).await;
        let seen = replica.wait_for("k", Duration::from_secs(2)).await.unwrap();
        assert!(seen.value == b"a" || seen.value == b"b", "{seen:?}");
        while replica.dirty_read("k").await.unwrap().map(|e| e.value) != Some(b"b".to_vec()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        replica
            .wait_for_release("k", Duration::from_secs(3))
            .await
            .unwrap();
        assert_eq!(client.read("k").await.unwrap(), None);
        let next = client.lock("k", "c", Duration::from_secs(2)).await.unwrap();
        assert!(next.token > h.token);
        assert_eq!(
            refused(
                client
                    .extend("k", "b", Duration::from_millis(600), Some(h.token))
                    .await
            ),
            OpError::NotOwner
        );
        assert_eq!(
            refused(replica.wait_for("absent", Duration::from_millis(100)).await),
            OpError::Timeout
        );
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quorum_then_release_with_one_node_down_and_restart() {
    bounded!(30, async {
        let mut c = Cluster::start(3, 0).await;
        let client = c.client(0);
        let h = client.lock("k", "a", Duration::from_secs(2)).await.unwrap();
        // A commit may reach only w masters, and a release by token needs w
        // masters that hold the entry (see the report): take down a master
        // that lacks it if there is one, else n3.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut down = 2;
        for i in [1, 2] {
            if c.client(i).dirty_read("k").await.unwrap().is_none() {
                down = i;
            }
        }
        c.kill(down);
        client.release("k", "a", Some(h.token)).await.unwrap();
        let up = 3 - down;
        let h2 = client
            .lock("k2", "a", Duration::from_secs(2))
            .await
            .unwrap();
        c.kill(up);
        assert_eq!(
            refused(client.lock("k3", "a", Duration::from_secs(2)).await),
            OpError::NoQuorum
        );
        // Restart one with amnesia: it is quarantined, so n1 alone cannot lock.
        let id = NodeId(up as u64 + 1);
        let l = TcpListener::bind(c.addrs[&id]).await.unwrap();
        let n2 = c.start_node(id, l, true).await;
        let r = client.lock("k3", "a", Duration::from_secs(2)).await;
        assert!(
            matches!(
                r,
                Err(Error::Refused(OpError::Recovering | OpError::NoQuorum))
            ),
            "{r:?}"
        );
        let status = n2.client().status().await.unwrap();
        assert!(status.summary.recovering);
        // Extending needs w acknowledgements too: n1 alone cannot.
        assert!(client
            .extend("k2", "a", Duration::from_secs(2), Some(h2.token))
            .await
            .is_err());
        c.nodes[up] = Some(n2);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_are_turned_away_and_others_still_served() {
    bounded!(20, async {
        let c = Cluster::start(3, 0).await;
        let addr = c.addrs[&NodeId(1)];
        match Client::connect(addr, Some(b"wrong")).await {
            Err(Error::Auth(_)) => {}
            other => panic!("wrong secret accepted: {:?}", other.err()),
        }
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\ngarbage garbage")
            .await
            .unwrap();
        let mut s2 = TcpStream::connect(addr).await.unwrap();
        s2.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        s2.write_all(&[1; 64]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let good = c.remote(0).await;
        good.lock("k", "v", Duration::from_secs(1)).await.unwrap();
        let status = good.status().await.unwrap();
        let count = |n: &str| status.counters.iter().find(|(k, _)| k == n).unwrap().1;
        assert!(count("auth_failures") >= 3, "{:?}", status.counters);
        assert!(count("bad_frames") >= 1, "{:?}", status.counters);
        drop((s, s2));
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_extends_then_loses_its_lease_when_the_cluster_is_gone() {
    bounded!(20, async {
        let mut c = Cluster::start(3, 0).await;
        let client = c.remote(0).await;
        let guard = client
            .register_name("leader", "me", Duration::from_millis(600))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            guard.state(),
            LeaseState::Held,
            "the guard extended past the first lease"
        );
        assert_eq!(
            client
                .whereis_name("leader", Consistency::Consistent)
                .await
                .unwrap()
                .as_deref(),
            Some(&b"me"[..])
        );
        let mut watch = guard.watch();
        let deadline = guard.deadline();
        c.kill(1);
        c.kill(2);
        let t = Instant::now();
        while *watch.borrow() != LeaseState::Lost {
            watch.changed().await.unwrap();
        }
        assert!(Instant::now() >= deadline, "lost only at the deadline");
        assert!(t.elapsed() < Duration::from_secs(2));
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_releases_on_drop() {
    bounded!(20, async {
        let c = Cluster::start(3, 0).await;
        let client = c.client(0);
        let guard = client
            .lock_guard("k", "a", Duration::from_secs(3))
            .await
            .unwrap();
        drop(guard);
        let other = c.client(1).with_wait(Duration::from_secs(2));
        other.lock("k", "b", Duration::from_secs(3)).await.unwrap();
    })
}

fn serve(
    id: u64,
    listen: SocketAddr,
    masters: &str,
    secret: &std::path::Path,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_locker"))
        .args([
            "serve",
            "--id",
            &id.to_string(),
            "--listen",
            &listen.to_string(),
            "--masters",
            masters,
        ])
        .arg("--secret-file")
        .arg(secret)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn cli(node: SocketAddr, secret: &std::path::Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_locker"))
        .arg("--node")
        .arg(node.to_string())
        .arg("--secret-file")
        .arg(secret)
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn three_serve_processes_and_the_command_line() {
    let dir = std::env::temp_dir().join(format!("locker-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let masters = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| serve(i as u64 + 1, *a, &masters, &secret))
        .collect();
    let t = Instant::now();
    let mut ok = false;
    while t.elapsed() < Duration::from_secs(10) {
        let (code, v) = cli(
            addrs[0],
            &secret,
            &["lock", "k", "alice", "--lease-ms", "5000"],
        );
        if code == 0 {
            assert!(v["token"].as_u64().unwrap() >= 1);
            assert!(v["valid_for_ms"].as_u64().unwrap() > 4000);
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "the cluster never accepted a lock");
    // Node 2 answers `held` only once it hears a majority of masters; a node
    // whose links are still coming up rightly says `no_quorum`.
    for a in &addrs {
        let t = Instant::now();
        loop {
            let (code, v) = cli(*a, &secret, &["status"]);
            let peers = v["peers"].as_object().cloned().unwrap_or_default();
            if code == 0 && peers.len() == 2 && peers.values().all(|s| s == "up") {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "links never came up: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (code, v) = cli(
        addrs[1],
        &secret,
        &[
            "lock",
            "k",
            "bob",
            "--lease-ms",
            "5000",
            "--wait-ms",
            "1000",
        ],
    );
    assert_eq!((code, v["error"].as_str()), (1, Some("held")));
    let (code, v) = cli(addrs[2], &secret, &["read", "k"]);
    assert_eq!((code, v["value"].as_str()), (0, Some("alice")));
    let (code, v) = cli(addrs[0], &wrong, &["status"]);
    assert_eq!((code, v["error"].as_str()), (2, Some("auth")));
    let (code, v) = cli(addrs[0], &secret, &["status"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["role"], "master");
    let (code, _) = cli(addrs[0], &secret, &["release", "k", "alice"]);
    assert_eq!(code, 0);
    for p in &mut procs {
        let _ = p.kill();
        let _ = p.wait();
    }
    let _ = std::fs::remove_dir_all(dir);
}
