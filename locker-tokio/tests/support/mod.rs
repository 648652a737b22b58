//! What the tokio test files share. Each test file uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

/// Runs `fut` on a fresh two-worker runtime, as on the CI machine.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}

/// A loopback address whose port was free a moment ago (another test may
/// take it before a node binds it: callers start again on a new one).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// `serve --masters`'s list for masters `1..=addrs.len()` on `addrs`.
pub fn masters_list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs a client command of the `locker` program against `node`: its exit
/// code and its JSON output (`Null` if it printed none).
pub fn cli(node: SocketAddr, secret: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_locker"))
        .arg("--node")
        .arg(node.to_string())
        .arg("--secret-file")
        .arg(secret)
        .args(args)
        .output()
        .expect("run locker");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), v)
}
