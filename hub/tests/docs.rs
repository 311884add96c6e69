//! The operator docs must show the config the binary generates.

#[test]
fn docs_hub_config_md_shows_the_generated_config() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/hub-config.md"
    ))
    .expect("docs/hub-config.md");
    assert!(
        docs.contains(ferry_hub::config::TEMPLATE),
        "docs/hub-config.md does not contain the output of `ferry-hub generate-config`; update it"
    );
}
