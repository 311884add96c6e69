//! The fault scenarios at CI scale (see `ferry_hil_tests::faults`). Each
//! prints a `FAULTS <scenario>: …` summary line; run with `--nocapture` to
//! see them, or use the `ferry-faults` runner (`--long` for soak runs).
//! `FERRY_FAULTS_MINUTES=<m>` runs these at soak scale too.

use ferry_hil_tests::faults::{Scale, netfilter, scenarios};
use ferry_hil_tests::{find_tool, peers_required};

/// False (after saying SKIPPED) when `present` is false and peers are not
/// required; a required peer that is missing fails inside the scenario.
fn runnable(present: bool, what: &str) -> bool {
    if !present && !peers_required() {
        eprintln!("SKIPPED: {what}; run scripts/test.sh");
        return false;
    }
    true
}

#[test]
fn agent_kill_9_under_load() {
    scenarios::agent_kill(Scale::from_env());
}

#[test]
fn hub_unreachable_then_back() {
    if !runnable(
        netfilter::available(),
        "iptables is not usable here (needs root and the iptables package)",
    ) {
        return;
    }
    scenarios::hub_unreachable(Scale::from_env());
}

#[test]
fn hub_kill_9_mid_upload_and_mid_commit() {
    scenarios::hub_kill(Scale::from_env());
}

#[test]
fn object_store_faults() {
    if !runnable(
        find_tool("moto_server").is_some(),
        "moto_server is not installed",
    ) {
        return;
    }
    scenarios::object_store(Scale::from_env());
}

#[test]
fn network_flapping() {
    if !runnable(
        netfilter::available(),
        "iptables is not usable here (needs root and the iptables package)",
    ) {
        return;
    }
    scenarios::flapping(Scale::from_env());
}

#[test]
fn clock_jumps() {
    scenarios::clock_jumps(Scale::from_env());
}

#[test]
fn power_cut_under_the_buffer() {
    scenarios::power_cut(Scale::from_env());
}

#[test]
fn disk_budget_reject_new() {
    scenarios::disk_budget_reject_new(Scale::from_env());
}

#[test]
fn disk_budget_drop_oldest() {
    scenarios::disk_budget_drop_oldest(Scale::from_env());
}

#[test]
fn serial_unplug_mid_modbus_poll() {
    if !runnable(find_tool("socat").is_some(), "socat is not installed") {
        return;
    }
    scenarios::serial_unplug(Scale::from_env());
}
