//! The operator docs must show the config the binary generates.

#[test]
fn docs_hub_md_shows_the_generated_config() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/hub.md"))
        .expect("docs/hub.md");
    assert!(
        docs.contains(ferry_hub::config::TEMPLATE),
        "docs/hub.md does not contain the output of `ferry-hub generate-config`; update its configuration reference"
    );
}
