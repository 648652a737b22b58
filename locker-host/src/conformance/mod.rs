//! The conformance suite: every scenario an adapter must pass, written once
//! against [`Runtime`](crate::Runtime), over real TCP on loopback.
//!
//! An adapter runs the whole suite from its tests with one macro call,
//! naming its runtime, how to block on a future, and where each node runs
//! (all on the runtime under test, or some on another for a mixed cluster):
//!
//! ```ignore
//! locker_host::conformance_suite!(
//!     runtime: MyRuntime::default(),
//!     block_on: my_block_on,
//!     place: locker_host::conformance::all_on(MyRuntime::default()),
//! );
//! ```
//!
//! Scenarios wait for what they expect (links up, a replica catching up)
//! rather than sleeping a fixed time, and each is bounded by a timeout, so
//! they hold on a loaded machine.

mod cluster;
pub mod guard;
pub mod membership;
pub mod scenarios;
pub mod start;

pub use cluster::{
    all_on, bounded, node_on, sleep, Cluster, Place, Placement, Restart, RunningNode, Started,
    SECRET,
};

/// Expands to one `#[test]` per conformance scenario.
///
/// `runtime` is the runtime the test's clients and timers use, `block_on`
/// runs a future to completion on the test thread, and `place` is a
/// [`Placement`] saying which runtime each node of a cluster runs on.
#[macro_export]
macro_rules! conformance_suite {
    (runtime: $runtime:expr, block_on: $block_on:path, place: $place:expr $(,)?) => {
        $crate::conformance_suite!(@tests_of scenarios, $runtime, $block_on, $place;
            racing_lockers_get_one_winner_and_increasing_tokens,
            update_extend_expiry_and_replica_waits,
            a_replica_started_late_catches_up,
            set_w_and_set_nodes_reach_every_node,
            one_master_down_changes_nothing,
            release_succeeds_with_a_master_down,
            no_quorum_when_a_majority_is_down,
            a_killed_master_restarts_quarantined_then_votes_again,
            guard_extends_then_loses_its_lease_when_the_cluster_is_gone,
            guard_releases_on_drop_and_the_name_registry_follows,
            bad_clients_are_turned_away_and_others_still_served,
            a_peer_with_the_wrong_secret_never_joins,
        );
        $crate::conformance_suite!(@tests_of membership, $runtime, $block_on, $place;
            a_new_node_replaces_a_master_and_the_links_follow,
        );
        $crate::conformance_suite!(@tests_of start, $runtime, $block_on, $place;
            masters_restarted_without_state_keep_a_held_key_held,
            masters_restarted_with_state_keep_tokens_increasing,
            damaged_state_is_a_start_error,
            a_failed_persist_stops_the_node,
            calls_end_when_their_node_stops,
            a_ready_node_takes_a_lock_at_once,
        );
        $crate::conformance_suite!(@tests_of guard, $runtime, $block_on, $place;
            a_paused_guard_reads_lost_past_its_deadline_before_its_keeper_runs,
            a_guard_reads_danger_well_before_lost_when_the_cluster_is_unreachable,
            a_guard_granted_too_late_is_refused_and_frees_the_key,
        );
    };
    (@tests_of $module:ident, $runtime:expr, $block_on:path, $place:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $block_on($crate::conformance::$module::$name($runtime, $place));
            }
        )*
    };
}
