//! `locker demo`: a 3-master cluster and a replica in this process, on loopback.

use locker_core::{Config, NodeId};
use locker_tokio::{Client, Consistency, Error, LocalNode, NodeOptions, StartMode};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

fn step(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

fn show(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

pub async fn run() -> ExitCode {
    match demo().await {
        Ok(()) => {
            println!("\nDemo finished: every step behaved as described.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::from(1)
        }
    }
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    step(
        1,
        "Start a cluster of 3 masters (n1, n2, n3) and 1 replica (n4) on loopback",
    );
    let masters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let replicas = vec![NodeId(4)];
    let mut listeners = Vec::new();
    let mut addrs = HashMap::new();
    for id in 1..=4 {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        addrs.insert(NodeId(id), l.local_addr()?);
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let mut config = Config::new(id, masters.clone(), replicas.clone());
        config.seed = rand::random();
        let mut opts = NodeOptions::new(config, addrs.clone());
        opts.secret = Some(b"demo secret".to_vec());
        // A brand-new cluster: its masters have never voted, so they need no
        // quarantine (every later start of a master waits one out).
        opts.start = StartMode::Bootstrap;
        let node = LocalNode::start(l, opts).await?;
        println!(
            "   {} listening on {} ({})",
            id,
            node.local_addr(),
            if i < 3 { "master" } else { "replica" }
        );
        nodes.push(node);
    }
    println!(
        "   peers authenticate with HMAC-SHA256 challenge-response over a shared secret; w = 2"
    );
    // Let the peer links come up.
    let c1 = nodes[0].client().with_wait(Duration::from_secs(3));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        let mut all_up = true;
        for n in &nodes {
            all_up &= n.client().status().await?.links.iter().all(|(_, up)| *up);
        }
        if all_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    step(
        2,
        "Leader election: three contenders race to register the name \"leader\"",
    );
    let mut tasks = Vec::new();
    for i in 0..3 {
        // Contenders talk to n1 and n2 (n3 is killed later on).
        let client = nodes[i % 2].client().with_wait(Duration::from_secs(1));
        tasks.push(tokio::spawn(async move {
            let me = format!("contender-{}", i + 1);
            (
                me.clone(),
                client
                    .register_name("leader", &me, Duration::from_secs(2))
                    .await,
            )
        }));
    }
    let mut leader = None;
    for t in tasks {
        let (me, r) = t.await?;
        match r {
            Ok(guard) => {
                println!("   {me}: elected, fencing token {}", guard.token());
                leader = Some((me, guard));
            }
            Err(e) => println!("   {me}: not elected ({})", e),
        }
    }
    let (leader_name, guard) = leader.ok_or("nobody was elected")?;
    let who = c1.whereis_name("leader", Consistency::Consistent).await?;
    println!(
        "   whereis_name(\"leader\") with a quorum read: {}",
        who.as_deref().map(show).unwrap_or_default()
    );
    println!("   the lease is 2 s; the guard extends it when half remains. Waiting 3 s...");
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "   after 3 s the guard still holds it: state {:?}, deadline in {} ms",
        guard.state(),
        guard
            .deadline()
            .saturating_duration_since(Instant::now())
            .as_millis()
    );

    step(3, "A lock with its fencing token");
    let c2 = nodes[1].client().with_wait(Duration::from_millis(500));
    let alice = c1.lock("printer", "alice", Duration::from_secs(10)).await?;
    println!(
        "   alice locks \"printer\": token {}, valid for {} ms",
        alice.token,
        alice.validity.as_millis()
    );
    match c2.lock("printer", "bob", Duration::from_secs(10)).await {
        Err(Error::Refused(e)) => println!("   bob tries too: refused ({})", e.code()),
        other => return Err(format!("bob should have been refused, got {other:?}").into()),
    }
    c1.release("printer", "alice", Some(alice.token)).await?;
    println!("   alice releases with her token");
    let bob = c2.lock("printer", "bob", Duration::from_secs(10)).await?;
    println!("   bob locks \"printer\": token {} (> {}: a resource that saw alice's token rejects her late writes)", bob.token, alice.token);

    step(4, "A holder that stops extending loses the key");
    let carol = c1.lock("job", "carol", Duration::from_millis(800)).await?;
    println!(
        "   carol locks \"job\" for 800 ms (token {}) and then goes silent",
        carol.token
    );
    let t = Instant::now();
    c1.wait_for_release("job", Duration::from_secs(5)).await?;
    println!(
        "   n1 (the coordinator, whose master voted) sees \"job\" expire after {} ms",
        t.elapsed().as_millis()
    );
    let dave = c2.lock("job", "dave", Duration::from_secs(5)).await?;
    println!("   dave takes \"job\": token {}", dave.token);
    match c1
        .extend("job", "carol", Duration::from_secs(5), Some(carol.token))
        .await
    {
        Err(Error::Refused(e)) => println!("   carol's late extend is refused ({})", e.code()),
        other => return Err(format!("carol's extend should fail, got {other:?}").into()),
    }

    step(5, "Kill master n3: with 2 of 3 masters, locks keep working");
    nodes[2].shutdown();
    println!("   n3 stopped");
    let erin = c1
        .lock("after-kill", "erin", Duration::from_secs(5))
        .await?;
    println!(
        "   erin locks \"after-kill\" through n1: token {}",
        erin.token
    );
    c1.release("after-kill", "erin", Some(erin.token)).await?;
    println!("   and releases it");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    println!(
        "   the leader's guard kept extending: state {:?}",
        guard.state()
    );

    step(
        6,
        "Read the key space from the replica n4 over the client protocol",
    );
    let replica = Client::connect(nodes[3].local_addr(), Some(b"demo secret")).await?;
    let seen = replica.wait_for("printer", Duration::from_secs(2)).await?;
    println!(
        "   n4 has \"printer\" = {} (token {}, {} ms left), replicated asynchronously",
        show(&seen.value),
        seen.token,
        seen.remaining.as_millis()
    );
    let leader_on_replica = replica.whereis_name("leader", Consistency::Dirty).await?;
    println!(
        "   whereis_name(\"leader\") on n4 (dirty): {}",
        leader_on_replica.as_deref().map(show).unwrap_or_default()
    );
    match Client::connect(nodes[3].local_addr(), Some(b"wrong secret")).await {
        Err(Error::Auth(e)) => println!("   a client with the wrong secret is turned away: {e}"),
        _ => return Err("a wrong secret should be refused".into()),
    }

    step(7, "The leader steps down; another contender takes over");
    let mut watch = guard.watch();
    if let Err(e) = guard.release().await {
        println!("   the release answered: {e}");
    }
    let _ = watch.changed().await;
    println!(
        "   {leader_name} released \"leader\" (state {:?})",
        watch.get()
    );
    let next = c2
        .clone()
        .with_wait(Duration::from_secs(3))
        .register_name("leader", "contender-2b", Duration::from_secs(2))
        .await?;
    println!("   contender-2b is elected with token {}", next.token());
    println!(
        "   its guard is valid: {} (state {:?})",
        next.is_valid(),
        next.state()
    );
    next.release().await?;

    println!("\n(total {:.1} s)", started.elapsed().as_secs_f64());
    for n in &nodes {
        n.shutdown();
    }
    Ok(())
}
