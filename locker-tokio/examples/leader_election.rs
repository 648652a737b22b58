//! Leader election with the name registry and the lease guard.
//!
//! Three masters run in this process on loopback; three contenders race for
//! the name "leader". The winner works while its guard says `Held`, passing
//! its fencing token to what it writes, and steps down after a while; the
//! others watch the registry and take over.
//!
//! `cargo run -p locker-tokio --example leader_election`

use locker_core::{Config, NodeId};
use locker_tokio::{Client, Consistency, LeaseState, LocalNode, NodeOptions};
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
        nodes.push(LocalNode::start(l, NodeOptions::new(config, addrs.clone())).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

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

/// Tries to become leader; leads for one term; stops after leading once.
async fn contend(me: String, client: Client) {
    loop {
        match client
            .register_name("leader", &me, Duration::from_secs(1))
            .await
        {
            Ok(guard) => {
                println!("{me}: I am the leader (token {})", guard.token());
                let mut state = guard.watch();
                for step in 0..5 {
                    if state.get() != LeaseState::Held {
                        println!("{me}: lease in danger or lost: stopping work");
                        return;
                    }
                    println!(
                        "{me}: step {step}, writing with fencing token {}",
                        guard.token()
                    );
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                println!("{me}: stepping down");
                let _ = guard.release().await;
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
