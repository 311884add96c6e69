//! The operator docs must show the config the binary generates.

#[test]
fn docs_agent_md_shows_the_generated_config() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/agent.md"))
        .expect("docs/agent.md");
    assert!(
        docs.contains(ferry_agent::config::TEMPLATE),
        "docs/agent.md does not contain the output of `ferry-agent generate-config`; update its configuration reference"
    );
}
