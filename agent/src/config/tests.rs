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
    assert_eq!(config.uplink.hubs(), defaults.uplink.hubs());
    assert_eq!(config.uplink.failback_after, defaults.uplink.failback_after);
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
fn hub_urls_are_checked_one_by_one() {
    let errors_of = |text: &str| match parse(Path::new("a.toml"), text) {
        Err(ConfigError::Invalid { errors, .. }) => errors,
        Err(e) => panic!("expected Invalid, got {e}"),
        Ok(_) => Vec::new(),
    };
    let ok = parse(
        Path::new("a.toml"),
        "[uplink]\nhub_urls = [\"http://a:8000\", \"https://b:8000/\"]\n",
    )
    .expect("two hubs");
    assert_eq!(ok.uplink.hubs(), ["http://a:8000", "https://b:8000/"]);
    let errors =
        errors_of("[uplink]\nhub_url = \"http://a:8000\"\nhub_urls = [\"http://b:8000\"]\n");
    assert!(errors.iter().any(|e| e.contains("not both")), "{errors:?}");
    let errors = errors_of(
        "[uplink]\nhub_urls = [\"http://a:8000\", \"ftp://b\", \"http://a:8000/\"]\nfailback_after = \"0s\"\n",
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("uplink.hub_urls") && e.contains("ftp://b")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("listed twice")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("uplink.failback_after")),
        "{errors:?}"
    );
    let many: Vec<String> = (0..17).map(|i| format!("\"http://h{i}:8000\"")).collect();
    let errors = errors_of(&format!("[uplink]\nhub_urls = [{}]\n", many.join(", ")));
    assert!(
        errors.iter().any(|e| e.contains("at most 16")),
        "{errors:?}"
    );
}

#[test]
fn bad_names_fail_at_parse_time() {
    let err = parse(Path::new("a.toml"), "[agent]\nid = \"../etc\"\n").unwrap_err();
    assert!(err.to_string().contains("agent id"), "{err}");
}

#[test]
fn the_templates_serial_examples_are_valid_when_uncommented() {
    let start = TEMPLATE
        .find("# [[serial.ports]]")
        .expect("serial examples");
    let end = TEMPLATE
        .find("# -- end of serial examples --")
        .expect("end marker");
    let uncommented: String = TEMPLATE[start..end]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        // Prose lines between the examples.
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        // Keys that belong to other formats than the example's.
        .filter(|l| {
            !l.starts_with("pattern") && !l.starts_with("precision") && !l.starts_with("time_")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let config = parse(Path::new("serial.toml"), &uncommented)
        .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert_eq!(config.serial.ports.len(), 2);
    assert_eq!(config.serial.ports[1].slaves[0].registers.len(), 3);
    assert_eq!(config.modbus_tcp.len(), 1);
}

#[test]
fn serial_config_problems_have_paths() {
    let text = r#"
[[serial.ports]]
name = "a"
path = "/dev/x"
mode = "lines"
database = "d"
data_bits = 9

[[serial.ports]]
name = "a"
path = "/dev/y"
mode = "modbus-rtu"
database = "d"
[[serial.ports.slaves]]
id = 0
measurement = "m"
[[serial.ports.slaves.registers]]
field = "f"
table = "coil"
address = 65535
type = "u32"
"#;
    let text = parse(Path::new("s.toml"), text).unwrap_err().to_string();
    for expected in [
        "serial.ports[0].data_bits: must be 5, 6, 7 or 8",
        "serial.ports[0].lines: required for mode \"lines\"",
        "serial.ports[1].name: \"a\" is used twice",
        "serial.ports[1].slaves[0].id: 0 is outside 1..=247",
        "serial.ports[1].slaves[0].registers[0].type: coils and discrete inputs are bool",
        "serial.ports[1].slaves[0].registers[0].address: the value runs past register 65535",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
