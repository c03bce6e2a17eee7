//! The artifact store on every backend a user has: local disk (`file://`), memory (tests) and
//! a real S3-protocol server (moto, started here on 127.0.0.1). The same test body runs on
//! each. Hashes are checked against `sha256sum` (coreutils), an independent implementation.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use wax_tests::s3::TestS3;
use wax_worker::artifacts::{
    ArtifactError, ArtifactStore, Cache, FileRecord, PART_SIZE, S3Settings,
};

#[path = "common/s3.rs"]
mod common_s3;
use common_s3::{python, settings as s3_settings};

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Bytes that do not repeat with the part size (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The shared test body.
async fn exercise(store: ArtifactStore, scratch: &Path) {
    // A small file (one PUT) and one of 2.5 parts (multipart).
    let small = scratch.join("small.json");
    std::fs::write(&small, b"{\"a\": 1}\n").unwrap();
    let big = scratch.join("model.safetensors");
    std::fs::write(&big, noise(PART_SIZE * 5 / 2, 7)).unwrap();
    let prefix = "cas/abc/1";
    let mut records = Vec::new();
    for (local, rel) in [(&small, "summary.json"), (&big, "step-1/model.safetensors")] {
        let r = store.upload_file(local, &format!("{prefix}/{rel}")).await.unwrap();
        assert_eq!(r.sha256, sha256sum(local), "{rel}");
        assert_eq!(r.size, std::fs::metadata(local).unwrap().len());
        records.push(r);
    }
    let listed = store.list("cas/abc").await.unwrap();
    assert_eq!(
        listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["cas/abc/1/step-1/model.safetensors", "cas/abc/1/summary.json"]
    );
    assert_eq!(listed[0].1, (PART_SIZE * 5 / 2) as u64);

    // Downloads are verified; a wrong hash leaves nothing behind.
    let back = scratch.join("back/model.safetensors");
    store.download_verified(&records[1].path, &back, &records[1]).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&big).unwrap());
    let wrong = FileRecord { sha256: "0".repeat(64), ..records[0].clone() };
    let bad = scratch.join("bad/summary.json");
    let e = store.download_verified(&records[0].path, &bad, &wrong).await.unwrap_err();
    assert!(matches!(e, ArtifactError::Corrupt { .. }), "{e}");
    assert!(!bad.exists());
    assert_eq!(std::fs::read_dir(scratch.join("bad")).unwrap().count(), 0, "no partial file left");
    let e = store.download_verified("cas/none", &bad, &wrong).await.unwrap_err();
    assert!(matches!(e, ArtifactError::NotFound { .. }), "{e}");

    // Conditional create: exactly one of many concurrent creators wins.
    let wins: Vec<bool> =
        futures::future::join_all((0..16).map(|i| {
            let s = store.clone();
            async move {
                s.create_bytes("cas/abc/_COMMITTED", format!("{i}").into_bytes()).await.unwrap()
            }
        }))
        .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    let winner = wins.iter().position(|w| *w).unwrap();
    assert_eq!(
        store.get_bytes("cas/abc/_COMMITTED").await.unwrap().unwrap(),
        format!("{winner}").into_bytes()
    );
    assert_eq!(store.get_bytes("cas/abc/none").await.unwrap(), None);

    // The machine cache fetches once and hands out read-only files.
    let cache = Cache::new(scratch.join("cache"));
    let (p1, fetched) = cache.fetch(&store, &records[1].path, &records[1]).await.unwrap();
    assert!(fetched);
    let (p2, fetched) = cache.fetch(&store, &records[1].path, &records[1]).await.unwrap();
    assert!(!fetched && p1 == p2);
    assert!(std::fs::metadata(&p1).unwrap().permissions().readonly());
    let placed = scratch.join("task/inputs/model.safetensors");
    Cache::place(&p1, &placed).unwrap();
    assert_eq!(sha256sum(&placed), records[1].sha256);

    // Copy and delete.
    store.copy("cas/abc/1/summary.json", "cas/abc/2/summary.json").await.unwrap();
    assert_eq!(store.get_bytes("cas/abc/2/summary.json").await.unwrap().unwrap(), b"{\"a\": 1}\n");
    assert_eq!(store.delete_prefix("cas/abc/1").await.unwrap(), 2);
    assert_eq!(store.list("cas/abc/1").await.unwrap(), []);
    assert_eq!(store.list("cas/abc").await.unwrap().len(), 2);
}

#[test]
fn memory_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open("memory://artifacts-test", &S3Settings::default()).unwrap();
    runtime().block_on(exercise(store, dir.path()));
}

#[test]
fn local_disk_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    let store = ArtifactStore::open(&url, &S3Settings::default()).unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    runtime().block_on(exercise(store, &scratch));
    // Objects are plain files under the directory.
    assert!(dir.path().join("store/cas/abc/2/summary.json").is_file());
}

#[test]
fn s3_store_on_moto() {
    let Some(s3) = TestS3::start(&python()) else { return };
    s3.create_bucket("wax-artifacts");
    let settings = s3_settings(&s3);
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open("s3://wax-artifacts/team/runs", &settings).unwrap();
    runtime().block_on(exercise(store.clone(), dir.path()));
    // The prefix is honoured: keys sit under team/runs/ in the bucket.
    let whole = ArtifactStore::open("s3://wax-artifacts", &settings).unwrap();
    let keys = runtime().block_on(whole.list("team/runs/cas")).unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let _ = Arc::new(store);
}

#[test]
fn bad_urls_are_named() {
    let e = ArtifactStore::open("ftp://x", &S3Settings::default()).unwrap_err().to_string();
    assert!(e.contains("ftp://x") && e.contains("file://"), "{e}");
    let e = ArtifactStore::open("s3://", &S3Settings::default()).unwrap_err().to_string();
    assert!(e.contains("s3://bucket"), "{e}");
    let half = S3Settings { access_key_id: Some("k".into()), ..S3Settings::default() };
    let e = ArtifactStore::open("s3://b", &half).unwrap_err().to_string();
    assert!(e.contains("go together"), "{e}");
}
