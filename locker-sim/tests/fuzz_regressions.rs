//! Replays every committed `cluster_schedule` fuzz input (corpus and the
//! failures it found) through the simulator: each must now pass every checker.

use std::path::Path;

use locker_sim::{run, schedule};

#[test]
fn committed_cluster_schedules_pass_every_checker() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for dir in ["regressions/cluster_schedule", "corpus/cluster_schedule"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap();
            let Ok((seed, options)) = schedule::from_bytes(&bytes) else {
                continue;
            };
            let result = run(seed, &options, false);
            assert!(
                result.report.ok(),
                "{}: seed {seed} {options:?}: {:?}",
                path.display(),
                result.report.violations
            );
            replayed += 1;
        }
    }
    assert!(replayed >= 3, "the committed regressions were not found");
}
