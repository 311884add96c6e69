//! Real object stores for tests, each a child process: moto (S3, with an
//! atomic conditional put) and Azurite (Azure Blob). [`moto`] and
//! [`azurite`] start one with a bucket or container and give the hub's
//! `[storage]` keys for it (and the environment the hub needs).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::serial::python_with;
use crate::{Peer, free_port, require_tool, wait_for_port};

/// A running store.
#[derive(Debug)]
pub struct Store {
    pub peer: Peer,
    /// The keys of the hub's `[storage]` section (no section header),
    /// with `prefix = "lake"`.
    pub storage: String,
    /// Environment the hub process needs for this store (and any other
    /// reader of it: Azurite's URL).
    pub env: Vec<(String, String)>,
    /// The lake's URL for other engines (`s3://lake/lake`, `az://...`).
    pub lake_url: String,
    /// The storage options delta-rs and Polars take for it, as
    /// docs/scale-out.md gives them.
    pub reader_options: Vec<(String, String)>,
}

/// Azurite's well-known account key.
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// moto on a free port with bucket `bucket`; `None` when moto is missing
/// (and peers are not required).
pub fn moto(dir: &Path, bucket: &str) -> Option<Store> {
    let moto = require_tool("moto_server", "pip install 'moto[server]'")?;
    let port = free_port();
    let peer = Peer::spawn(
        "moto",
        Command::new(moto).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
        &dir.join("moto.log"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_port(addr, Duration::from_secs(30));
    let answer = http_put(addr, &format!("/{bucket}"));
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "create bucket: {answer}"
    );
    let storage = format!(
        r#"backend = "s3"
bucket = "{bucket}"
prefix = "lake"
endpoint = "http://{addr}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"
allow_http = true
addressing = "path"
conditional_put = "etag"
"#
    );
    let reader_options = [
        ("AWS_ENDPOINT_URL", format!("http://{addr}")),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec();
    Some(Store {
        peer,
        storage,
        env: Vec::new(),
        lake_url: format!("s3://{bucket}/lake"),
        reader_options,
    })
}

/// Azurite on a free port with container `container`; `None` when Azurite
/// or the Python Azure client is missing (and peers are not required).
pub fn azurite(dir: &Path, container: &str) -> Option<Store> {
    let azurite = require_tool("azurite-blob", "npm install -g azurite")?;
    let python = python_with(&["azure.storage.blob"])?;
    let port = free_port();
    let peer = Peer::spawn(
        "azurite",
        Command::new(azurite).args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            &dir.join("azurite-data").to_string_lossy(),
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ]),
        &dir.join("azurite.log"),
    );
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(30),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/azure_container.py");
    let out = Command::new(&python)
        .arg(script)
        .args([&port.to_string(), container])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "create container: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("http://127.0.0.1:{port}");
    let storage = format!(
        r#"backend = "azure"
account = "devstoreaccount1"
container = "{container}"
prefix = "lake"
access_key = "{AZURITE_KEY}"
use_emulator = true
endpoint = "{url}"
"#
    );
    let reader_options = [
        ("azure_storage_account_name", "devstoreaccount1"),
        ("azure_storage_account_key", AZURITE_KEY),
        ("azure_storage_use_emulator", "true"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    Some(Store {
        peer,
        storage,
        env: vec![("AZURITE_BLOB_STORAGE_URL".to_owned(), url)],
        lake_url: format!("az://{container}/lake"),
        reader_options,
    })
}

/// A bodiless `PUT` (moto creates a bucket so); the raw answer.
fn http_put(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}
