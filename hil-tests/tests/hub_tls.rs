//! The hub over TLS (`[server.tls]`), with the clients users run: the
//! agent's uplink trusting a private CA with `uplink.ca_file`, the unchanged
//! InfluxDB 2.x Python client (`ssl_ca_cert`), and Python's `ssl`.
//!
//! A CA and two server certificates are made at run time with `openssl`.
//! The test checks that plain HTTP gets no answer on the TLS port, that a
//! new certificate is served after SIGHUP and after a file change without a
//! restart (the agent keeps uploading across both), and that no token, not
//! even one sent in the `/write?p=` query string, reaches the logs. Flight
//! SQL speaks TLS with the same certificate (ADBC trusting the CA; a plain
//! gRPC client gets nothing) and follows its reloads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_hil_tests::serial::python_with;
use ferry_hil_tests::{free_port, publish_lines, require_tool, spawn_agent, spawn_hub, wait_until};
use serde_json::{Value, json};

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ca.pem`/`ca.key`, and a server certificate `<name>.crt`/`<name>.key`
/// for 127.0.0.1 and localhost signed by it.
fn make_ca(dir: &Path) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Ferry test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        dir,
    );
}

fn make_leaf(dir: &Path, name: &str) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            &crt,
        ],
        dir,
    );
}

/// SHA-256 of a PEM certificate's DER, as the client script prints it.
fn der_sha256(dir: &Path, crt: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in {crt} -outform DER | openssl dgst -sha256 -r"
        ))
        .current_dir(dir)
        .output()
        .expect("openssl dgst");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

struct Client {
    python: PathBuf,
    script: PathBuf,
    url: String,
    ca: PathBuf,
}

impl Client {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .output()
            .expect("run tls_client.py");
        assert!(
            out.status.success(),
            "tls_client.py {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// POSTs `body`, with `token` as a bearer header unless it is `-`.
    fn post(&self, token: &str, path: &str, body: &str) -> (u16, String) {
        let ca = self.ca.display().to_string();
        let out = self.run(&["post", &self.url, token, &ca, path, body]);
        let (status, text) = out.split_once(' ').unwrap_or((&out, ""));
        (status.parse().unwrap_or(0), text.to_owned())
    }

    fn count(&self, token: &str, sql: &str) -> Option<u64> {
        let (status, text) = self.post(token, "/api/v1/query", &json!({ "sql": sql }).to_string());
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&text).ok()?;
        v["data"][0][0].as_u64()
    }

    fn fingerprint(&self, port: u16) -> String {
        let ca = self.ca.display().to_string();
        self.run(&["fingerprint", "127.0.0.1", &port.to_string(), &ca])
    }
}

#[test]
fn agents_and_influx_clients_reach_the_hub_over_tls_and_certificates_reload() {
    let Some(python) = python_with(&["influxdb_client", "adbc_driver_flightsql"]) else {
        return;
    };
    if require_tool("openssl", "apt-get install openssl").is_none()
        || require_tool("mosquitto_pub", "apt-get install mosquitto-clients").is_none()
    {
        return;
    }
    let mosquitto_pub = require_tool("mosquitto_pub", "").expect("mosquitto_pub");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_ca(d);
    make_leaf(d, "first");
    make_leaf(d, "second");
    std::fs::copy(d.join("first.crt"), d.join("hub.crt")).expect("copy");
    std::fs::copy(d.join("first.key"), d.join("hub.key")).expect("copy");

    let port = free_port();
    let flight_port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = d.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[server.tls]\ncert = \"{crt}\"\nkey = \"{key}\"\nreload_interval = \"200ms\"\n\
             [flight]\nlisten = \"127.0.0.1:{flight_port}\"\n[storage]\nbackend = \"fs\"\npath = \"{tables}\"\n[tables]\ncommit_interval = \"50ms\"\n\
             [metadata]\npath = \"{meta}\"\n[auth]\nenabled = true\n",
            crt = d.join("hub.crt").display(),
            key = d.join("hub.key").display(),
            tables = d.join("tables").display(),
            meta = d.join("hub.db").display(),
        ),
    )
    .expect("hub.toml");
    let hub_log = d.join("hub.log");
    let (mut hub, admin) = spawn_hub(&config, addr, &hub_log, true);
    let admin = admin.expect("bootstrap token");
    let client = Client {
        python,
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls_client.py"),
        url: format!("https://127.0.0.1:{port}"),
        ca: d.join("ca.pem"),
    };

    // Plain HTTP on the TLS port gets no HTTP answer.
    assert_eq!(
        client.run(&["plain", "127.0.0.1", &port.to_string()]),
        "refused"
    );
    assert_eq!(client.fingerprint(port), der_sha256(d, "first.crt"));

    let mut secrets = Vec::new();
    let mut create = |spec: Value| {
        let (status, text) = client.post(&admin, "/api/v1/auth/tokens", &spec.to_string());
        assert_eq!(status, 201, "create token: {text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        let t = v["token"].as_str().expect("token").to_owned();
        secrets.push(t.clone());
        t
    };
    let writer = create(json!({"name": "telegraf", "role": "write"}));
    let gateway = create(json!({"name": "gw-tls", "role": "write", "agents": "gw-tls"}));
    let reader = create(json!({"name": "grafana", "role": "read"}));

    // The unchanged InfluxDB client, verifying the hub with the CA.
    let ca = client.ca.display().to_string();
    assert_eq!(client.run(&["write", &client.url, &writer, &ca]), "ok");
    assert_eq!(
        client.count(&reader, "SELECT count(*) FROM tls.over_tls"),
        Some(3)
    );
    // A token in the URL (`/write?p=`, InfluxDB 1.x) works over TLS and is
    // not logged.
    let (status, text) = client.post(
        "-",
        &format!("/write?db=tls&u=telegraf&p={writer}"),
        "over_tls n=9i 1764158500000000000",
    );
    assert_eq!(status, 204, "/write?p=: {text}");
    assert_eq!(
        client.count(&reader, "SELECT count(*) FROM tls.over_tls"),
        Some(4)
    );
    // Flight SQL over TLS with the same certificate; plain gRPC gets nothing.
    let fp = flight_port.to_string();
    let count = "SELECT count(*) FROM tls.over_tls";
    assert_eq!(client.run(&["flight", &fp, &reader, &ca, count]), "4");
    let plain = client.run(&["flight-plain", &fp, &reader, count]);
    assert!(
        plain.starts_with("error:"),
        "plain gRPC on the TLS port: {plain}"
    );
    assert_eq!(client.fingerprint(flight_port), der_sha256(d, "first.crt"));

    // An agent uploading over TLS, trusting only the test CA.
    let mqtt = free_port();
    std::fs::write(d.join("agent.token"), &gateway).expect("token file");
    let agent_config = d.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"
[agent]
id = "gw-tls"
data_dir = "{data}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[[routes]]
topic = "tls/{{device}}"
database = "plant"
measurement = "secure"
[segment]
max_age = "200ms"
[uplink]
hub_url = "https://127.0.0.1:{port}"
token_file = "{token}"
ca_file = "{ca}"
timeout = "10s"
backoff_initial = "50ms"
backoff_max = "300ms"
[http]
listen = "127.0.0.1:{http}"
"#,
            data = d.join("agent").display(),
            token = d.join("agent.token").display(),
            http = free_port(),
        ),
    )
    .expect("agent.toml");
    let agent_log = d.join("agent.log");
    let _agent = spawn_agent(&agent_config, mqtt, &agent_log);
    let lines =
        |r: std::ops::Range<u32>| -> String { r.map(|i| format!("{{\"n\": {i}}}\n")).collect() };
    let expect = |n: u64| {
        wait_until(
            &format!("{n} readings from the agent over TLS"),
            Duration::from_secs(60),
            || client.count(&reader, "SELECT count(DISTINCT n) FROM plant.secure") == Some(n),
        );
    };
    publish_lines(&mosquitto_pub, mqtt, "tls/d1", &["-q", "1"], &lines(0..50));
    expect(50);

    // SIGHUP: the second certificate is served, no restart.
    std::fs::copy(d.join("second.crt"), d.join("hub.crt")).expect("copy");
    std::fs::copy(d.join("second.key"), d.join("hub.key")).expect("copy");
    let kill = Command::new("kill")
        .args(["-HUP", &hub.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(kill.success());
    let second = der_sha256(d, "second.crt");
    wait_until("the second certificate", Duration::from_secs(10), || {
        client.fingerprint(port) == second && client.fingerprint(flight_port) == second
    });
    assert_eq!(client.run(&["flight", &fp, &reader, &ca, count]), "4");
    publish_lines(
        &mosquitto_pub,
        mqtt,
        "tls/d1",
        &["-q", "1"],
        &lines(50..100),
    );
    expect(100);

    // A file change alone (no signal) is picked up too.
    std::fs::copy(d.join("first.crt"), d.join("hub.crt")).expect("copy");
    std::fs::copy(d.join("first.key"), d.join("hub.key")).expect("copy");
    let first = der_sha256(d, "first.crt");
    wait_until(
        "the first certificate again",
        Duration::from_secs(10),
        || client.fingerprint(port) == first,
    );
    publish_lines(
        &mosquitto_pub,
        mqtt,
        "tls/d1",
        &["-q", "1"],
        &lines(100..150),
    );
    expect(150);
    assert!(hub.is_running(), "the hub restarted");

    // No token in either log.
    for log in [&hub_log, &agent_log] {
        let text = std::fs::read_to_string(log).expect("log");
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{} contains a token",
                log.display()
            );
        }
    }
}
