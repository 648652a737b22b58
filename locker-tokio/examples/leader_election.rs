//! Leader election with the name registry and the lease guard.
//!
//! Three masters run in this process on loopback; three contenders race for
//! the name "leader". The winner works while its guard is valid, passing its
//! fencing token to what it writes, abandons a step the moment the lease is
//! lost, steps down early if the lease is in danger, and otherwise after a
//! while; the others watch the registry and take over.
//!
//! `cargo run -p locker-tokio --example leader_election`

use locker_core::{Config, NodeId};
use locker_tokio::{Client, Consistency, LeaseState, LocalNode, NodeOptions, StartMode, Token};
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let mut listeners = Vec::new();
    let mut addrs = HashMap::new();
    for id in ids {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        addrs.insert(id, l.local_addr()?);
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (id, l) in ids.into_iter().zip(listeners) {
        let config = Config::new(id, ids.to_vec(), vec![]);
        let mut opts = NodeOptions::new(config, addrs.clone());
        // A brand-new cluster in this process: its masters never voted.
        opts.start = StartMode::Bootstrap;
        nodes.push(LocalNode::start(l, opts).await?);
    }
    // Until the links are up, a lock could answer no_quorum.
    for node in &nodes {
        tokio::time::timeout(Duration::from_secs(10), node.ready()).await?;
    }

    let mut contenders = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let client = node.client().with_wait(Duration::from_millis(200));
        contenders.push(tokio::spawn(contend(format!("worker-{}", i + 1), client)));
    }
    for c in contenders {
        c.await?;
    }
    Ok(())
}

/// One step of the leader's work, fenced by its token.
async fn work(me: &str, step: u32, token: Token) {
    println!("{me}: step {step}, writing with fencing token {token}");
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Tries to become leader; leads for one term; stops after leading once.
async fn contend(me: String, client: Client) {
    loop {
        match client
            .register_name("leader", &me, Duration::from_secs(1))
            .await
        {
            Ok(guard) => {
                println!("{me}: I am the leader (token {})", guard.token());
                // A step starts only while the lease is valid, and is
                // abandoned the moment the lease is lost; the fencing token
                // makes a write that lands after a loss refusable anyway.
                for step in 0..5 {
                    if !guard.is_valid() {
                        println!("{me}: lease lost: stopping work");
                        return;
                    }
                    tokio::select! {
                        state = guard.lost() => {
                            println!("{me}: lease {state:?} during step {step}: abandoning it");
                            return;
                        }
                        () = work(&me, step, guard.token()) => {}
                    }
                    if guard.state() == LeaseState::Danger {
                        // Extends are failing or the deadline is near.
                        println!("{me}: lease in danger: stepping down early");
                        break;
                    }
                }
                println!("{me}: stepping down");
                if let Err(e) = guard.release().await {
                    println!("{me}: the release answered: {e}");
                }
                return;
            }
            Err(_) => {
                let leader = client
                    .whereis_name("leader", Consistency::Dirty)
                    .await
                    .ok()
                    .flatten();
                if let Some(l) = leader {
                    let _ = String::from_utf8(l).map(|l| println!("{me}: following {l}"));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}
