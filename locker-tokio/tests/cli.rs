//! `locker serve` processes (one under smol, two under tokio) and the
//! command line. The in-process scenarios are the conformance suite's
//! (`tests/conformance.rs`).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{cli, free_addr, masters_list};

/// How a `serve` process starts.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Start {
    /// The first start of a new cluster (`--bootstrap`).
    Bootstrap,
    /// Any later start: quarantined.
    Restart,
}

fn serve(
    id: u64,
    listen: SocketAddr,
    masters: &str,
    secret: &std::path::Path,
    data_dir: &std::path::Path,
    start: Start,
) -> std::process::Child {
    // Node 2 runs under smol where the program can: one cluster, two runtimes.
    let runtime = if id == 2 && cfg!(feature = "smol-nodes") {
        "smol"
    } else {
        "tokio"
    };
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_locker"));
    command
        .args([
            "serve",
            "--id",
            &id.to_string(),
            "--listen",
            &listen.to_string(),
            "--masters",
            masters,
            "--runtime",
            runtime,
        ])
        .arg("--secret-file")
        .arg(secret)
        .stderr(std::process::Stdio::null());
    command.arg("--data-dir").arg(data_dir);
    if start == Start::Bootstrap {
        command.arg("--bootstrap");
    }
    command.spawn().unwrap()
}

/// Serve processes, killed when dropped.
struct Procs(Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// Starts three masters on free loopback ports and waits until each answers.
/// A port found free may be taken before the node binds it (by a test
/// running beside this one): then start again on other ports.
fn start_cluster(secret: &std::path::Path, data: &std::path::Path) -> (Procs, Vec<SocketAddr>) {
    'attempt: for attempt in 0..5 {
        let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
        let masters = masters_list(&addrs);
        let mut procs = Procs(
            addrs
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let dir = data.join(format!("attempt{attempt}-n{}", i + 1));
                    serve(i as u64 + 1, *a, &masters, secret, &dir, Start::Bootstrap)
                })
                .collect(),
        );
        for (i, a) in addrs.iter().enumerate() {
            let t = Instant::now();
            while cli(*a, secret, &["status"]).0 != 0 {
                let exited = procs.0[i].try_wait().unwrap().is_some();
                if exited || t.elapsed() > Duration::from_secs(10) {
                    continue 'attempt;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        return (procs, addrs);
    }
    panic!("could not start three serve processes");
}

#[test]
fn three_serve_processes_and_the_command_line() {
    let dir = std::env::temp_dir().join(format!("locker-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    // Unique, so a node of a test running beside this one never answers.
    std::fs::write(&secret, format!("s3cret {}\n", std::process::id())).unwrap();
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    let (procs, addrs) = start_cluster(&secret, &dir);
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
    let (code, v) = cli(addrs[1], &secret, &["lag"]);
    assert_eq!(code, 0, "{v}");
    assert!(v["lag_us"].as_u64().unwrap() > 0, "{v}");
    drop(procs);
    let _ = std::fs::remove_dir_all(dir);
}

/// `serve --data-dir` persists the token ceiling; a node restarted on the
/// same directory starts above it and quarantined (it refuses to vote until
/// every lease it might have granted has expired).
#[test]
fn a_restarted_node_keeps_its_token_ceiling_and_is_quarantined() {
    let dir = std::env::temp_dir().join(format!("locker-ceiling-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "ceiling test\n").unwrap();
    let data = dir.join("data");
    let start = |addr: SocketAddr, start: Start| {
        let child = serve(1, addr, &format!("1={addr}"), &secret, &data, start);
        let procs = Procs(vec![child]);
        let t = Instant::now();
        while cli(addr, &secret, &["status"]).0 != 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "serve never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        procs
    };
    let addr = free_addr();
    let first = start(addr, Start::Bootstrap);
    let (code, v) = cli(addr, &secret, &["lock", "k", "a", "--lease-ms", "1000"]);
    assert_eq!(code, 0, "{v}");
    let token = v["token"].as_u64().unwrap();
    let state = std::fs::read_to_string(data.join("state")).unwrap();
    let ceiling: u64 = state
        .lines()
        .find_map(|l| l.strip_prefix("ceiling "))
        .expect("a ceiling line")
        .parse()
        .unwrap();
    assert!(ceiling >= token, "ceiling {ceiling} below token {token}");
    drop(first);
    let _second = start(addr, Start::Restart);
    let (code, v) = cli(addr, &secret, &["status"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["recovering"], true, "{v}");
    assert!(v["highest_token"].as_u64().unwrap() >= ceiling, "{v}");
    let (code, v) = cli(
        addr,
        &secret,
        &["lock", "k2", "b", "--lease-ms", "1000", "--wait-ms", "100"],
    );
    assert_eq!((code, v["error"].as_str()), (1, Some("recovering")), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bench --busy-poll` starts its `serve` processes with `--busy-poll` (on
/// both runtimes where the program has smol) and runs the poller itself;
/// the clusters work and the JSON says the poller was on. Nothing about
/// speed is asserted.
#[test]
fn bench_and_serve_accept_busy_poll() {
    let runtimes = if cfg!(feature = "smol-nodes") {
        "tokio,smol"
    } else {
        "tokio"
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_locker"))
        .args([
            "bench",
            "--runtime",
            runtimes,
            "--clients",
            "1,4",
            "--secs",
            "1",
            "--leases",
            "0",
            "--busy-poll",
            "2",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2 * runtimes.split(',').count(), "{lines:?}");
    for v in &lines {
        assert_eq!(v["errors"], 0, "{v}");
        assert!(v["cycles"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(v["busy_poll"], true, "{v}");
        assert_eq!(v["busy_poll_window_ms"], 2, "{v}");
    }
}

/// Runs `locker` with `args`; its exit code, stdout as JSON and stderr.
fn run(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_locker"))
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), v, stderr)
}

/// `serve` needs a data dir (or an explicit `--no-data-dir`), refuses
/// `--bootstrap` on a directory that holds state and a damaged state file,
/// naming the file.
#[test]
fn serve_refuses_starts_that_could_be_unsafe() {
    let dir = std::env::temp_dir().join(format!("locker-starts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let addr = free_addr().to_string();
    let masters = format!("1={addr}");
    let base = [
        "serve",
        "--id",
        "1",
        "--listen",
        &addr,
        "--masters",
        &masters,
    ];
    let (code, v, _) = run(&base);
    assert_eq!((code, v["error"].as_str()), (2, Some("usage")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("--data-dir"), "{v}");
    let (code, _, stderr) = run(&[&base[..], &["--bootstrap"]].concat());
    assert_eq!(code, 2, "--bootstrap without --data-dir: {stderr}");

    // A node that ran once: its data dir holds state.
    let data = dir.join("n1");
    let data_arg = data.to_str().unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "starts\n").unwrap();
    let first = Procs(vec![serve(
        1,
        addr.parse().unwrap(),
        &masters,
        &secret,
        &data,
        Start::Bootstrap,
    )]);
    let t = Instant::now();
    while !data.join("state").exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "no state written");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(first);
    let with_dir = [&base[..], &["--data-dir", data_arg]].concat();
    let (code, v, _) = run(&[&with_dir[..], &["--bootstrap"]].concat());
    assert_eq!(code, 2, "bootstrap over state: {v}");
    assert!(v["message"].as_str().unwrap().contains("state"), "{v}");
    for garbage in ["", "ceiling 5\n", "\u{1}\u{2}garbage"] {
        std::fs::write(data.join("state"), garbage).unwrap();
        let (code, v, _) = run(&with_dir);
        assert_eq!(code, 2, "state {garbage:?}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains(&data.join("state").display().to_string()),
            "{msg}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node that completes the handshake and then never answers: every
/// command ends, by `--timeout-ms` or by its default deadline, with exit 2.
#[test]
fn commands_end_against_a_node_that_stays_silent() {
    use locker_host::Runtime;
    use locker_tokio::TokioRuntime;
    let dir = std::env::temp_dir().join(format!("locker-silent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "silent").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = rt
        .block_on(async { TokioRuntime.listen(std_listener) })
        .unwrap();
    rt.spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((r, w, _)) = TokioRuntime::accept(&listener).await else {
                return;
            };
            let shook = locker_host::conn::accept(&TokioRuntime, r, w, b"silent", 1 << 20).await;
            // Keep the connection open and say nothing.
            held.push(shook);
        }
    });
    let t = Instant::now();
    let (code, v) = cli(addr, &secret, &["--timeout-ms", "1000", "read", "k"]);
    assert_eq!((code, v["error"].as_str()), (2, Some("timeout")), "{v}");
    let (code, v) = cli(
        addr,
        &secret,
        &["lock", "k", "a", "--lease-ms", "1000", "--wait-ms", "200"],
    );
    assert_eq!((code, v["error"].as_str()), (2, Some("timeout")), "{v}");
    assert!(t.elapsed() < Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&dir);
}
