//! Bulk import with real processes: `ferry-hub import` killed (SIGKILL) in
//! the middle of its upload and run again (it sends only the rest); the
//! hub killed twice in the middle of the job while the CLI follows it
//! (the job resumes, every row lands once); the same file a third time
//! (nothing written); and a multipart upload from curl, as Arc documents.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_hil_tests::{
    Peer, find_tool, free_port, http, query, spawn_hub, wait_until, workspace_bin,
};
use serde_json::Value;

const ROWS: usize = 200_000;
/// 2024-01-01T00:00:00Z in seconds.
const T0: i64 = 1_704_067_200;

fn launch(dir: &Path, addr: SocketAddr, log: &str, first: bool) -> (Peer, Option<String>) {
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n\
             [tables]\ncommit_interval = \"50ms\"\n[metadata]\npath = \"{}\"\n\
             [import]\nchunk_rows = 2000\n",
            dir.join("tables").display(),
            dir.join("hub.db").display()
        ),
    )
    .expect("write hub.toml");
    spawn_hub(&config, addr, &dir.join(log), first)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

fn get(addr: SocketAddr, token: &str, path: &str) -> Value {
    let auth = format!("Bearer {token}");
    let (status, body) = http("GET", addr, path, &[("authorization", &auth)], b"");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

fn try_get(addr: SocketAddr, token: &str, path: &str) -> Option<Value> {
    let auth = format!("Bearer {token}");
    let answer = ferry_hil_tests::try_request(
        "GET",
        addr,
        path,
        &[("authorization", &auth)],
        b"",
        Duration::from_secs(5),
    )
    .ok()?;
    (answer.status == 200).then(|| answer.json())
}

fn cli(file: &Path, addr: SocketAddr, token: &str, log: &Path) -> Command {
    let mut c = Command::new(workspace_bin("ferry-hub"));
    c.arg("import")
        .arg(file)
        .args(["--url", &format!("http://{addr}"), "--token", token])
        .args([
            "--database",
            "plant",
            "--measurement",
            "flow",
            "--tag-columns",
            "site",
        ])
        .args(["--time-format", "epoch_s", "--piece-size", "16KiB"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).expect("log"))
        .stderr(std::fs::File::create(log.with_extension("err")).expect("log"));
    c
}

fn count(addr: SocketAddr, token: &str, sql: &str) -> Option<i64> {
    query(addr, Some(token), sql)?["data"][0][0].as_i64()
}

#[test]
fn interrupted_uploads_and_killed_hubs_leave_every_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (mut hub, token) = launch(dir.path(), addr, "hub-0.log", true);
    let token = token.expect("admin token");

    let file = dir.path().join("flow.csv");
    let mut csv = String::from("time,site,rate,level\n");
    for i in 0..ROWS {
        csv.push_str(&format!(
            "{},s{},{}.25,{}\n",
            T0 + i as i64,
            i % 5,
            i,
            i % 1000
        ));
    }
    std::fs::write(&file, &csv).expect("write csv");
    let size = csv.len() as u64;
    let sha = sha256(&file);
    let upload = format!("/api/v1/import/uploads/{sha}");

    // 1. The CLI, killed in the middle of its upload.
    let mut first = Peer::spawn(
        "import-1",
        &mut cli(&file, addr, &token, &dir.path().join("cli-1.log")),
        &dir.path().join("cli-1.spawn.log"),
    );
    let mut at_kill = 0;
    wait_until("the upload to start", Duration::from_secs(60), || {
        at_kill = try_get(addr, &token, &upload)
            .and_then(|v| v["received"].as_u64())
            .unwrap_or(0);
        at_kill > 0
    });
    first.kill();
    let kept = get(addr, &token, &upload)["received"].as_u64().unwrap_or(0);
    assert!(
        kept > 0 && kept < size,
        "the kill came too late to test a resume: {kept} of {size} bytes"
    );

    // 2. Run again: it resumes from what the hub kept, starts the job, and
    //    follows it while the hub is killed twice mid-job.
    let log2 = dir.path().join("cli-2.log");
    let mut second = cli(&file, addr, &token, &log2)
        .spawn()
        .expect("start the CLI");
    let mut job_id = String::new();
    for round in 1..=2 {
        let mut done = 0;
        wait_until(
            "the job to commit a few chunks",
            Duration::from_secs(120),
            || {
                let Some(jobs) = try_get(addr, &token, "/api/v1/import/jobs") else {
                    return false;
                };
                let job = &jobs["jobs"][0];
                job_id = job["id"].as_str().unwrap_or_default().to_owned();
                done = job["chunks_done"].as_u64().unwrap_or(0);
                job["state"] == "running" && done >= 3 * round
            },
        );
        hub.kill();
        hub = launch(dir.path(), addr, &format!("hub-{round}.log"), false).0;
    }
    let status = second.wait().expect("the CLI ends");
    let out = std::fs::read_to_string(&log2).unwrap_or_default();
    let err = std::fs::read_to_string(log2.with_extension("err")).unwrap_or_default();
    assert!(status.success(), "the CLI failed: {out}\n{err}");
    assert!(
        out.contains(&format!("{ROWS} rows imported, 0 rejected")),
        "{out}\n{err}"
    );

    let job = get(addr, &token, &format!("/api/v1/import/jobs/{job_id}"));
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["rows_imported"], ROWS as u64, "{job}");
    assert_eq!(job["content_sha256"], sha.as_str());
    assert_eq!(
        count(addr, &token, "SELECT count(*) FROM plant.flow"),
        Some(ROWS as i64)
    );
    assert_eq!(
        count(addr, &token, "SELECT count(DISTINCT time) FROM plant.flow"),
        Some(ROWS as i64)
    );
    let sum: i64 = (0..ROWS as i64).map(|i| i % 1000).sum();
    assert_eq!(
        count(
            addr,
            &token,
            "SELECT CAST(sum(level) AS BIGINT) FROM plant.flow"
        ),
        Some(sum)
    );

    // 3. The same file again: the first job answers, nothing is written.
    let log3 = dir.path().join("cli-3.log");
    let status = cli(&file, addr, &token, &log3)
        .status()
        .expect("the CLI runs");
    assert!(status.success());
    let err = std::fs::read_to_string(log3.with_extension("err")).unwrap_or_default();
    assert!(err.contains("already imported"), "{err}");
    let out = std::fs::read_to_string(&log3).unwrap_or_default();
    assert!(out.contains("nothing written"), "{out}");
    assert_eq!(
        count(addr, &token, "SELECT count(*) FROM plant.flow"),
        Some(ROWS as i64)
    );

    // 4. curl's multipart upload (Arc's documented form) of line protocol.
    if let Some(curl) = find_tool("curl") {
        let lp = dir.path().join("extra.lp");
        std::fs::write(
            &lp,
            "flow,site=z rate=1.5 1704067200\nflow,site=z rate=2.5 1704067201\n",
        )
        .expect("write lp");
        let out = Command::new(curl)
            .args(["-s", "-H", &format!("Authorization: Bearer {token}"), "-F"])
            .arg(format!("file=@{}", lp.display()))
            .arg(format!(
                "http://{addr}/api/v1/import/lp?db=plant&precision=s"
            ))
            .output()
            .expect("curl");
        let v: Value = serde_json::from_slice(&out.stdout).expect("json answer");
        assert_eq!(v["status"], "ok", "{v}");
        assert_eq!(v["result"]["rows_imported"], 2, "{v}");
        assert_eq!(v["job"]["file_name"], "extra.lp", "{v}");
        assert_eq!(
            count(addr, &token, "SELECT count(*) FROM plant.flow"),
            Some(ROWS as i64 + 2)
        );
    }
    hub.kill();
}
