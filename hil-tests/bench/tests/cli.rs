//! `ferry-bench`'s command line, as CI and users call it.
//!
//! This integration test also makes `cargo test --workspace --all-targets`
//! build the `ferry-bench` binary with the test suite's features, which
//! `scripts/test.sh` then runs (`cargo run -p ferry-bench` would resolve
//! features for that package alone and compile DataFusion and delta-rs a
//! second time).

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry-bench"))
        .args(args)
        .output()
        .expect("run ferry-bench")
}

#[test]
fn an_unknown_scenario_is_refused_with_the_valid_ones() {
    let out = bench(&["nonsense", "--quick"]);
    assert!(!out.status.success(), "an unknown scenario must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'nonsense'"), "{err}");
    for scenario in ["mqtt", "topics", "queries", "commit-growth", "all"] {
        assert!(err.contains(scenario), "{scenario} missing from: {err}");
    }
}

#[test]
fn a_scenario_is_required() {
    let out = bench(&["--quick"]);
    assert!(!out.status.success(), "no scenario must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("<SCENARIOS>"), "{err}");
}
