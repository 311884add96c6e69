use std::time::Instant;

use object_store::local::LocalFileSystem;
use object_store::throttle::{ThrottleConfig, ThrottledStore};

use super::*;

/// A `_delta_log` in a temporary directory, and stores rooted at it.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(LOG_DIR)).unwrap();
        Self { dir }
    }

    fn touch(&self, name: &str) {
        std::fs::write(self.dir.path().join(LOG_DIR).join(name), b"{}").unwrap();
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(LOG_DIR).join(name)).unwrap();
    }

    fn commits(&self, versions: Range<u64>) {
        for v in versions {
            self.touch(&version_name(v, "json"));
        }
    }

    fn local(&self) -> Arc<dyn ObjectStore> {
        Arc::new(LocalFileSystem::new_with_prefix(self.dir.path()).unwrap())
    }

    /// A store whose every listing takes `list_wait`: a probe that lists
    /// shows up as time.
    fn store(&self, list_wait: Duration) -> LocalLog {
        let config = ThrottleConfig {
            wait_list_per_call: list_wait,
            ..ThrottleConfig::default()
        };
        let fs = || LocalFileSystem::new_with_prefix(self.dir.path()).unwrap();
        LocalLog::with_inner(Arc::new(ThrottledStore::new(fs(), config)), fs())
    }
}

fn log() -> Path {
    Path::from(LOG_DIR)
}

fn from(version: u64) -> Path {
    log().join(format!("{version:020}"))
}

async fn names(store: &dyn ObjectStore, offset: &Path) -> Vec<String> {
    let listed: Vec<ObjectMeta> = store
        .list_with_offset(Some(&log()), offset)
        .try_collect()
        .await
        .unwrap();
    let mut names: Vec<String> = listed
        .iter()
        .map(|m| m.location.filename().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// A listing that would hang the test if the probe listed the directory.
const NEVER: Duration = Duration::from_secs(3_600);

/// [`names`], failing instead of hanging when the store lists.
async fn probed_names(store: &dyn ObjectStore, offset: &Path) -> Vec<String> {
    tokio::time::timeout(Duration::from_secs(10), names(store, offset))
        .await
        .expect("the probe answered without listing the directory")
}

#[tokio::test]
async fn a_probe_finds_what_a_listing_finds_without_listing() {
    let f = Fixture::new();
    f.commits(0..130);
    f.touch(&version_name(100, "checkpoint.parquet"));
    f.touch(&version_name(129, "crc"));
    f.touch("_last_checkpoint");
    let probed = f.store(NEVER);
    let listed = f.local();
    for start in [0, 1, 99, 100, 101, 129] {
        let expected: Vec<String> = names(listed.as_ref(), &from(start))
            .await
            .into_iter()
            .filter(|n| n != "_last_checkpoint")
            .collect();
        assert_eq!(
            probed_names(&probed, &from(start)).await,
            expected,
            "from {start}"
        );
        assert_eq!(
            expected.first().unwrap(),
            &match start {
                100 => version_name(100, "checkpoint.parquet"),
                129 => version_name(129, "crc"),
                _ => version_name(start, "json"),
            }
        );
    }
    // One past the end: nothing new, still without listing.
    assert!(probed_names(&probed, &from(130)).await.is_empty());
}

#[tokio::test]
async fn a_start_below_the_clean_up_lists_the_directory() {
    let f = Fixture::new();
    // Commits 0..=9 were cleaned up after the checkpoint at 10.
    f.commits(10..15);
    f.touch(&version_name(10, "checkpoint.parquet"));
    let expected = names(f.local().as_ref(), &from(0)).await;
    assert_eq!(expected.len(), 6);
    let started = Instant::now();
    let store = f.store(Duration::from_millis(200));
    assert_eq!(names(&store, &from(0)).await, expected);
    assert!(started.elapsed() >= Duration::from_millis(200), "it listed");
    // An empty log is listed too (and is empty).
    let empty = Fixture::new();
    assert!(
        names(&empty.store(Duration::ZERO), &from(0))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_gap_is_listed_again_and_a_lasting_one_is_handed_on() {
    let f = Fixture::new();
    f.commits(0..6);
    f.remove(&version_name(3, "json"));
    let store = f.store(Duration::ZERO);
    let started = Instant::now();
    let listed = names(&store, &from(0)).await;
    // The probe stopped at 3, saw 4, and listed: 5 times, 10 + 20 + 30 +
    // 40 ms apart; the gap is handed on for the kernel to report.
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(listed.len(), 5);
    assert!(!listed.contains(&version_name(3, "json")));
}

#[tokio::test]
async fn a_gap_that_closes_is_not_seen() {
    let f = Fixture::new();
    f.commits(0..6);
    f.remove(&version_name(3, "json"));
    let store = f.store(Duration::ZERO);
    let path = f.dir.path().join(LOG_DIR).join(version_name(3, "json"));
    // The missing commit appears while the store waits to list again.
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(15)).await;
        std::fs::write(path, b"{}").unwrap();
    });
    let listed = names(&store, &from(0)).await;
    writer.await.unwrap();
    assert_eq!(listed.len(), 6, "{listed:?}");
}

#[tokio::test]
async fn other_listings_pass_through() {
    let f = Fixture::new();
    f.commits(0..3);
    f.touch("_last_checkpoint");
    let store = f.store(Duration::ZERO);
    // An offset that is not a version: the directory's own answer.
    let offset = log().join("00000000000000000001.json");
    assert_eq!(
        names(&store, &offset).await,
        names(f.local().as_ref(), &offset).await
    );
    assert!(log_exists(&store).await.unwrap());
    // An empty log directory, and none at all.
    assert!(
        !log_exists(&Fixture::new().store(Duration::ZERO))
            .await
            .unwrap()
    );
    let bare = tempfile::tempdir().unwrap();
    let none = LocalLog::new(LocalFileSystem::new_with_prefix(bare.path()).unwrap());
    assert!(!log_exists(&none).await.unwrap());
}

#[test]
fn gaps_count_only_after_the_newest_checkpoint() {
    let meta = |name: &str| ObjectMeta {
        location: log().join(name.to_owned()),
        last_modified: chrono::Utc::now(),
        size: 1,
        e_tag: None,
        version: None,
    };
    let files = |names: &[&str]| names.iter().map(|n| meta(n)).collect::<Vec<_>>();
    let v = |n: u64| version_name(n, "json");
    let cp = |n: u64| version_name(n, "checkpoint.parquet");
    assert!(!has_gap(&log(), &files(&[&v(1), &v(2), &v(3)])));
    assert!(has_gap(&log(), &files(&[&v(1), &v(3)])));
    // Before the checkpoint at 5 nothing is needed.
    assert!(!has_gap(
        &log(),
        &files(&[&v(1), &v(3), &cp(5), &v(5), &v(6)])
    ));
    assert!(has_gap(&log(), &files(&[&cp(5), &v(5), &v(7)])));
    // Files below the log directory are not commits of it.
    let staged = meta("x");
    let staged = ObjectMeta {
        location: log().join("_staged_commits").join(v(9)),
        ..staged
    };
    let mut listed = files(&[&v(1), &v(2)]);
    listed.push(staged);
    assert!(!has_gap(&log(), &listed));
    assert_eq!(commit_version(&v(42)), Some(42));
    assert_eq!(commit_version("42.json"), None);
    assert_eq!(checkpoint_version(&cp(7)), Some(7));
    assert_eq!(
        checkpoint_version("00000000000000000007.checkpoint.0000000001.0000000002.parquet"),
        Some(7)
    );
    assert_eq!(log_start(Some(&log()), &from(12)), Some(12));
    assert_eq!(log_start(Some(&log()), &log().join(v(12))), None);
    assert_eq!(log_start(Some(&Path::from("data")), &from(12)), None);
    assert_eq!(log_start(None, &from(12)), None);
}

#[test]
fn no_commit_after_looks_for_the_next_commit_only() {
    let f = Fixture::new();
    f.commits(0..3);
    assert!(!no_commit_after(f.dir.path(), 1), "commit 2 is there");
    assert!(no_commit_after(f.dir.path(), 2));
    // A checkpoint or a checksum is not a commit.
    f.touch(&version_name(3, "crc"));
    f.touch(&version_name(3, "checkpoint.parquet"));
    assert!(no_commit_after(f.dir.path(), 2));
    f.commits(3..4);
    assert!(!no_commit_after(f.dir.path(), 2));
    assert!(
        !no_commit_after(f.dir.path(), u64::MAX),
        "no version after the last"
    );
}

/// Threads of this process whose name is `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[test]
fn many_reads_at_once_start_no_blocking_thread_of_the_caller() {
    // What the kernel does at a checkpoint: read a hundred commits at once.
    let fx = Fixture::new();
    fx.commits(0..200);
    let name = "ll-caller";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(60))
        .enable_all()
        .build()
        .unwrap();
    let store = LocalLog::new(LocalFileSystem::new_with_prefix(fx.dir.path()).unwrap());
    let read = runtime.block_on(async {
        let reads = (0..200).map(|v| {
            let store = store.clone();
            async move {
                let path = log().join(version_name(v, "json"));
                let got = store.get_opts(&path, GetOptions::default()).await.unwrap();
                got.bytes().await.unwrap()
            }
        });
        futures_util::future::join_all(reads).await
    });
    assert!(
        read.iter().all(|b| &b[..] == b"{}"),
        "every commit read whole"
    );
    // The caller's runtime has its worker and nothing else (it had 44
    // threads before); the disk's threads stay within their cap.
    assert_eq!(
        threads_named(name),
        1,
        "blocking threads on the caller's runtime"
    );
    let cap = disk_threads();
    let disk = threads_named(DISK_THREAD_NAME);
    assert!(
        disk <= cap + 1,
        "{disk} disk I/O threads, cap {cap} and a worker"
    );
}

#[tokio::test]
async fn a_read_on_the_disk_threads_is_the_same_read() {
    let fx = Fixture::new();
    let path = log().join("data.bin");
    std::fs::write(fx.dir.path().join(LOG_DIR).join("data.bin"), b"0123456789").unwrap();
    let store = LocalLog::new(LocalFileSystem::new_with_prefix(fx.dir.path()).unwrap());
    let options = GetOptions {
        range: Some((2..6).into()),
        ..GetOptions::default()
    };
    let got = store.get_opts(&path, options).await.unwrap();
    assert_eq!((got.range.clone(), got.meta.size), (2..6, 10));
    assert_eq!(&got.bytes().await.unwrap()[..], b"2345");
    let head = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    assert_eq!(store.get_opts(&path, head).await.unwrap().meta.size, 10);
    let missing = store
        .get_opts(&log().join("nothing"), GetOptions::default())
        .await;
    assert!(matches!(missing, Err(object_store::Error::NotFound { .. })));
}
