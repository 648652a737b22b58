//! The conformance suite on a mixed cluster: n1 and n3 (masters) under
//! tokio, n2 (master) and n4 (replica) under smol, clients under tokio.
//! Both adapters speak one wire format and one handshake.

#![cfg(feature = "smol-nodes")]

use locker_core::NodeId;
use locker_host::conformance::{node_on, Placement};
use locker_smol::SmolRuntime;
use locker_tokio::TokioRuntime;
use std::sync::Arc;

mod support;

/// n2 and n4 under smol, the others under tokio.
fn alternating() -> Placement<TokioRuntime> {
    let on_tokio = node_on(TokioRuntime, TokioRuntime);
    let on_smol = node_on(SmolRuntime::default(), TokioRuntime);
    Arc::new(move |id: NodeId| {
        if matches!(id.0, 2 | 4) {
            on_smol.clone()
        } else {
            on_tokio.clone()
        }
    })
}

locker_host::conformance_suite!(
    runtime: TokioRuntime,
    block_on: support::block_on,
    place: alternating(),
);
