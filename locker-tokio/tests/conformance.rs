//! The conformance suite on tokio: every node and client under tokio.

use locker_host::conformance::all_on;
use locker_tokio::TokioRuntime;

mod support;

locker_host::conformance_suite!(
    runtime: TokioRuntime,
    block_on: support::block_on,
    place: all_on(TokioRuntime),
);
