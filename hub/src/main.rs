//! `ferry-hub`: the hub. Not built yet; see issue "ferry-hub".

fn main() {
    println!(
        "ferry-hub {}: the hub is not built yet (protocols {} is ready)",
        env!("CARGO_PKG_VERSION"),
        ferry_protocols::segment::FORMAT_VERSION
    );
}
