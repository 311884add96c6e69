use std::path::Path;

use super::*;

#[test]
fn the_template_parses_validates_and_matches_the_defaults() {
    let config = parse(Path::new("template.toml"), TEMPLATE).expect("the template is valid");
    let defaults = AgentConfig::default();
    assert_eq!(config.store, defaults.store);
    assert_eq!(config.segment, defaults.segment);
    assert_eq!(config.mqtt, defaults.mqtt);
    assert_eq!(config.http.listen, defaults.http.listen);
    assert_eq!(config.uplink.hub_url, defaults.uplink.hub_url);
    assert_eq!(config.agent.data_dir, defaults.agent.data_dir);
    assert_eq!(config.routes.len(), 1, "the template has one example route");
}

#[test]
fn an_empty_file_is_a_valid_config() {
    let config = parse(Path::new("empty.toml"), "").expect("defaults are valid");
    assert!(config.routes.is_empty());
    assert_eq!(
        config.buffer_path(),
        Path::new("ferry-data/agent/buffer.db")
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_place() {
    let err = parse(Path::new("a.toml"), "[store]\nmax_byte = \"1 GiB\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("max_byte"), "{text}");
    assert!(text.contains("a.toml"), "{text}");
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let text = r#"
[store]
max_bytes = "10 KiB"

[uplink]
hub_url = "ftp://hub"

[[routes]]
topic = "a/{device}"
database = "db"
"#;
    let err = parse(Path::new("a.toml"), text).unwrap_err();
    let ConfigError::Invalid { errors, .. } = err else {
        panic!("expected Invalid, got {err}");
    };
    assert!(
        errors.iter().any(|e| e.starts_with("store.max_bytes")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("uplink.hub_url")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("routes[0].measurement")),
        "{errors:?}"
    );
}

#[test]
fn bad_names_fail_at_parse_time() {
    let err = parse(Path::new("a.toml"), "[agent]\nid = \"../etc\"\n").unwrap_err();
    assert!(err.to_string().contains("agent id"), "{err}");
}
