//! `ferry-agent`: the gateway agent. Not built yet; see issue "ferry-agent".

fn main() {
    println!(
        "ferry-agent {}: the agent is not built yet (protocols {} is ready)",
        env!("CARGO_PKG_VERSION"),
        ferry_protocols::segment::FORMAT_VERSION
    );
}
