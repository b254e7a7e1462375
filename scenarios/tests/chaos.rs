//! The chaos soak's short version, in the test command: 30 s of the marketplace load on the
//! platform's processes with a fault every ~4 s, then every invariant (`scenarios::chaos`).
//! The seed is random unless `CHAOS_SEED` is set, and printed, so a failure can be repeated
//! with `bash scripts/chaos.sh --seed <seed> --duration 30 --fault-every 4`.
//!
//! Needs the service binaries beside the test's `chaos` binary (`scripts/test.sh` builds them
//! first) and restarts the local infrastructure's servers: it is the only test of its binary,
//! and cargo runs test binaries one after another.

use std::process::Command;

#[test]
fn a_short_soak_keeps_every_invariant() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chaos"));
    command.args(["--duration", "30", "--fault-every", "4", "--actors", "4"]);
    if let Ok(seed) = std::env::var("CHAOS_SEED") {
        command.args(["--seed", &seed]);
    }
    let status = command.status().expect("the chaos binary runs");
    assert!(
        status.success(),
        "the soak found a violation (report above): {status}"
    );
}
