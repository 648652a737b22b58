//! What the tokio test files share.

/// Runs `fut` on a fresh two-worker runtime, as on the CI machine.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}
