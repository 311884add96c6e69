//! The fault scenarios at CI scale (see `ferry_hil_tests::faults`). Each
//! prints a `FAULTS <scenario>: …` summary line; run with `--nocapture` to
//! see them, or use the `ferry-faults` runner (`--long` for soak runs).
//! `FERRY_FAULTS_MINUTES=<m>` runs these at soak scale too.

use ferry_hil_tests::faults::{Scale, netfilter, scenarios};

#[test]
fn agent_kill_9_under_load() {
    scenarios::agent_kill(Scale::from_env());
}

#[test]
fn hub_unreachable_then_back() {
    if !netfilter::available() && !ferry_hil_tests::peers_required() {
        eprintln!("SKIPPED: iptables is not usable here (needs root and the iptables package)");
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
    if ferry_hil_tests::find_tool("moto_server").is_none() && !ferry_hil_tests::peers_required() {
        eprintln!("SKIPPED: moto_server is not installed; run scripts/test.sh");
        return;
    }
    scenarios::object_store(Scale::from_env());
}

#[test]
fn network_flapping() {
    if !netfilter::available() && !ferry_hil_tests::peers_required() {
        eprintln!("SKIPPED: iptables is not usable here (needs root and the iptables package)");
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
    if ferry_hil_tests::find_tool("socat").is_none() && !ferry_hil_tests::peers_required() {
        eprintln!("SKIPPED: socat is not installed; run scripts/test.sh");
        return;
    }
    scenarios::serial_unplug(Scale::from_env());
}
