//! The conformance suite on smol: nodes on smol's global executor, the
//! scenario on the test thread.

use locker_host::conformance::all_on;
use locker_smol::SmolRuntime;

locker_host::conformance_suite!(
    runtime: SmolRuntime::default(),
    block_on: smol::block_on,
    place: all_on(SmolRuntime::default()),
);
