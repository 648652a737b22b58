//! The conformance suite on tokio: every node and client under tokio.

use locker_host::conformance::all_on;
use locker_tokio::TokioRuntime;

/// A two-worker runtime per test, as on the CI machine.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}

locker_host::conformance_suite!(
    runtime: TokioRuntime,
    block_on: block_on,
    place: all_on(TokioRuntime),
);
