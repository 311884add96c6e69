//! Reading `hub.toml` and collecting every error with its key path.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::HubConfig;

/// The top-level sections of `hub.toml`.
const SECTIONS: [&str; 21] = [
    "server",
    "flight",
    "storage",
    "tables",
    "compaction",
    "retention",
    "delete",
    "continuous_queries",
    "last_cache",
    "import",
    "metadata",
    "query",
    "ingest",
    "auth",
    "audit",
    "quotas",
    "instance",
    "alerts",
    "encryption",
    "replica",
    "log",
];

/// Every problem found in a configuration, each starting with its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and checks the file at `path`.
pub fn load_file(path: &Path) -> Result<HubConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
    parse(&text)
}

/// Reads the file at `path` if given, else the defaults; then checks it.
pub fn load(path: Option<&Path>) -> Result<HubConfig, ConfigErrors> {
    match path {
        Some(p) => load_file(p),
        None => {
            let config = HubConfig::default();
            let mut errors = Vec::new();
            config.validate(&mut errors);
            if errors.is_empty() {
                Ok(config)
            } else {
                Err(ConfigErrors(errors))
            }
        }
    }
}

/// `check-config`: `Ok(())` or every error of the file at `path`.
pub fn check_file(path: &Path) -> Result<(), ConfigErrors> {
    load_file(path).map(|_| ())
}

/// Parses and checks a configuration document.
pub fn parse(text: &str) -> Result<HubConfig, ConfigErrors> {
    let document: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigErrors(vec![format!("syntax: {}", e.to_string().trim_end())]))?;

    let mut errors = Vec::new();
    for key in document.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            errors.push(format!(
                "{key}: unknown section; expected one of {}",
                SECTIONS.join(", ")
            ));
        }
    }
    let mut config = HubConfig::default();
    if let Some(v) = section(&document, "server", &mut errors) {
        config.server = v;
    }
    if let Some(v) = section(&document, "flight", &mut errors) {
        config.flight = v;
    }
    if let Some(v) = section_whole(&document, "storage", &mut errors) {
        config.storage = v;
    }
    if let Some(v) = section(&document, "tables", &mut errors) {
        config.tables = v;
    }
    if let Some(v) = section(&document, "compaction", &mut errors) {
        config.compaction = v;
    }
    if let Some(v) = section(&document, "retention", &mut errors) {
        config.retention = v;
    }
    if let Some(v) = section(&document, "delete", &mut errors) {
        config.delete = v;
    }
    if let Some(v) = section(&document, "continuous_queries", &mut errors) {
        config.continuous_queries = v;
    }
    if let Some(v) = section(&document, "last_cache", &mut errors) {
        config.last_cache = v;
    }
    if let Some(v) = section(&document, "import", &mut errors) {
        config.import = v;
    }
    if let Some(v) = section(&document, "metadata", &mut errors) {
        config.metadata = v;
    }
    if let Some(v) = section(&document, "query", &mut errors) {
        config.query = v;
    }
    if let Some(v) = section(&document, "ingest", &mut errors) {
        config.ingest = v;
    }
    if let Some(v) = section(&document, "auth", &mut errors) {
        config.auth = v;
    }
    if let Some(v) = section(&document, "audit", &mut errors) {
        config.audit = v;
    }
    if let Some(v) = section(&document, "quotas", &mut errors) {
        config.quotas = v;
    }
    if let Some(v) = section(&document, "alerts", &mut errors) {
        config.alerts = v;
    }
    if let Some(v) = section(&document, "instance", &mut errors) {
        config.instance = v;
    }
    if let Some(v) = section(&document, "encryption", &mut errors) {
        config.encryption = v;
    }
    if let Some(v) = section(&document, "replica", &mut errors) {
        config.replica = v;
    }
    if let Some(v) = section(&document, "log", &mut errors) {
        config.log = v;
    }
    config.validate(&mut errors);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Deserializes section `name` if present. On failure, re-reads it one key
/// at a time to name each bad key; if no single key is at fault (a rule
/// across keys), reports the section's error.
fn section<T: DeserializeOwned>(
    document: &toml::Table,
    name: &str,
    errors: &mut Vec<String>,
) -> Option<T> {
    read_section(document, name, true, errors)
}

/// Like [`section`], for a section that cannot be read one key at a time
/// (`[storage]` is tagged by its `backend` key).
fn section_whole<T: DeserializeOwned>(
    document: &toml::Table,
    name: &str,
    errors: &mut Vec<String>,
) -> Option<T> {
    read_section(document, name, false, errors)
}

fn read_section<T: DeserializeOwned>(
    document: &toml::Table,
    name: &str,
    per_key: bool,
    errors: &mut Vec<String>,
) -> Option<T> {
    let value = document.get(name)?;
    let Some(table) = value.as_table() else {
        errors.push(format!(
            "{name}: expected a table ([{name}]), found a {}",
            value.type_str()
        ));
        return None;
    };
    match value.clone().try_into::<T>() {
        Ok(v) => Some(v),
        Err(whole) => {
            let before = errors.len();
            for (key, v) in table.iter().filter(|_| per_key) {
                let mut single = toml::Table::new();
                single.insert(key.clone(), v.clone());
                if let Err(e) = toml::Value::Table(single).try_into::<T>() {
                    errors.push(format!("{name}.{key}: {}", clean(&e)));
                }
            }
            if errors.len() == before {
                errors.push(format!("{name}: {}", clean(&whole)));
            }
            None
        }
    }
}

/// A toml error message on one line.
fn clean(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", HubConfig::default()));
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let text = r#"
            [server]
            listen = "not an address"
            max_bodyy = "1MiB"
            [query]
            timeout = "0s"
            [log]
            level = "=="
            [nonsense]
            x = 1
        "#;
        let errs = parse(text).unwrap_err().0;
        let joined = errs.join("\n");
        assert!(joined.contains("server.listen:"), "{joined}");
        assert!(joined.contains("server.max_bodyy:"), "{joined}");
        assert!(joined.contains("nonsense: unknown section"), "{joined}");
        assert!(
            joined.contains("query.timeout: must be greater than 0"),
            "{joined}"
        );
        assert!(joined.contains("log.level:"), "{joined}");
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            max_body = "1 MiB"
            [query]
            timeout = "5s"
            max_rows = 10
            [auth]
            enabled = false
            rotation_grace = "2h"
            [audit]
            failure_window = "5s"
            [quotas]
            database_rows_per_second = 100
            burst = "1s"
            [encryption]
            enabled = true
            key_env = "HUB_KEYS"
            [log]
            format = "json"
        "#,
        )
        .unwrap();
        assert_eq!(c.auth.rotation_grace.as_secs(), 7200);
        assert_eq!(c.audit.failure_window.as_secs(), 5);
        assert_eq!(c.quotas.database_rows_per_second, 100);
        assert_eq!(c.quotas.burst.as_secs(), 1);
        assert_eq!(c.encryption.key_env.as_deref(), Some("HUB_KEYS"));
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.server.max_body_bytes(), 1024 * 1024);
        assert_eq!(c.query.timeout.as_secs(), 5);
        assert_eq!(c.query.max_rows.get(), 10);
        assert!(!c.auth.enabled);
        assert_eq!(c.log.format, super::super::LogFormat::Json);
    }

    #[test]
    fn every_section_is_read() {
        // A section listed but never read would be accepted and ignored.
        let source = include_str!("load.rs");
        for s in SECTIONS {
            assert!(
                source.contains(&format!("(&document, \"{s}\"")),
                "[{s}] is listed in SECTIONS but never read"
            );
        }
    }

    #[test]
    fn datafusion_options_are_checked_by_name_and_value() {
        let c =
            parse("[query.datafusion]\n\"datafusion.execution.batch_size\" = \"16384\"\n").unwrap();
        let options = c.query.session_options().unwrap();
        assert_eq!(usize::from(options.execution.batch_size), 16384);
        // Ferry's own default, and the config overriding it.
        assert!(options.execution.parquet.pushdown_filters);
        let off = parse(
            "[query.datafusion]\n\"datafusion.execution.parquet.pushdown_filters\" = \"false\"\n",
        )
        .unwrap();
        assert!(
            !off.query
                .session_options()
                .unwrap()
                .execution
                .parquet
                .pushdown_filters
        );
        for (text, key) in [
            (
                "\"datafusion.execution.no_such_thing\" = \"1\"",
                "datafusion.execution.no_such_thing",
            ),
            (
                "\"datafusion.execution.batch_size\" = \"many\"",
                "datafusion.execution.batch_size",
            ),
            ("\"execution.batch_size\" = \"1\"", "execution.batch_size"),
        ] {
            let errs = parse(&format!("[query.datafusion]\n{text}\n"))
                .unwrap_err()
                .0
                .join("\n");
            assert!(
                errs.contains(&format!("query.datafusion.\"{key}\":")),
                "{text}: {errs}"
            );
        }
    }

    #[test]
    fn zero_rows_and_zero_body_rejected() {
        let errs = parse("[query]\nmax_rows = 0\n[server]\nmax_body = \"0B\"\n")
            .unwrap_err()
            .0
            .join("\n");
        assert!(errs.contains("query.max_rows"), "{errs}");
        assert!(errs.contains("server.max_body"), "{errs}");
    }
}
