//! `store::open`: the URL forms it accepts, and the clear error for the rest.

use wax_coordinator::records::{Resources, WorkerRecord};
use wax_coordinator::store::testing::TestPostgres;
use wax_coordinator::store::{self, Mutation};

fn worker(id: &str) -> WorkerRecord {
    WorkerRecord {
        id: id.into(),
        name: "w ✓".into(),
        resources: Resources {
            gpus: 1,
            gpu_memory_bytes: 1 << 34,
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
        },
        kinds: vec![("rl".into(), 1)],
        labels: vec![("zone".into(), "a".into())],
        max_concurrent_tasks: 1,
        registered_ms: 1,
        last_seen_ms: 2,
    }
}

#[tokio::test]
async fn open_accepts_the_documented_sqlite_urls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plain = dir.path().join("plain.db");
    let slashes = dir.path().join("slashes.db");
    for (url, path) in [
        (format!("sqlite:{}", plain.display()), Some(&plain)),
        // The temp path is absolute, so this is sqlite:///tmp/….
        (format!("sqlite://{}", slashes.display()), Some(&slashes)),
        ("sqlite::memory:".to_string(), None),
    ] {
        let s = store::open(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        s.apply(vec![Mutation::PutWorker(worker("w"))]).await.expect("apply");
        assert_eq!(s.load().await.expect("load").workers, vec![worker("w")], "{url}");
        if let Some(path) = path {
            assert_eq!(s.describe(), format!("sqlite:{}", path.display()));
            drop(s);
            assert!(path.is_file(), "{url} did not create {}", path.display());
        } else {
            assert_eq!(s.describe(), "sqlite::memory:");
        }
    }
}

#[tokio::test]
async fn open_rejects_other_urls_naming_the_accepted_forms() {
    for bad in ["mysql://root:hunter2@db/wax", "/var/lib/wax.db", "", "sqlite:", "sqlite://rel.db"]
    {
        let err = match store::open(bad).await {
            Ok(s) => panic!("{bad:?} was accepted as {}", s.describe()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("sqlite:"), "{bad:?}: {err}");
        assert!(!err.contains("hunter2"), "the error leaks a password: {err}");
    }
    let err = store::open("mysql://x").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains(store::STORE_URL_FORMS), "{err}");
}

#[tokio::test]
async fn open_accepts_postgres_urls() {
    let Some(pg) = TestPostgres::start() else { return };
    let alt = pg.url().replacen("postgres://", "postgresql://", 1);
    for url in [pg.url(), alt.as_str()] {
        let s = store::open(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(s.describe(), format!("postgres://postgres@127.0.0.1:{}/wax_test", pg.port()));
        s.apply(vec![Mutation::PutWorker(worker("w"))]).await.expect("apply");
        assert_eq!(s.load().await.expect("load").workers, vec![worker("w")]);
    }
}
