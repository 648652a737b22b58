//! The conformance suite under async-std: every task of every node and
//! client runs on async-std's executor; sockets and timers on the async-io
//! reactor that async-std shares with smol.

use locker_host::conformance::all_on;
use locker_smol::SmolRuntime;

fn on_async_std() -> SmolRuntime {
    SmolRuntime::with_spawner(|task| {
        async_std::task::spawn(task);
    })
}

locker_host::conformance_suite!(
    runtime: on_async_std(),
    block_on: async_std::task::block_on,
    place: all_on(on_async_std()),
);
