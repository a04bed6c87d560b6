//! The store of job files, one suite on both backends: the local folder and a real
//! S3-compatible server (a private moto_server, hearth_testkit::s3). Without
//! moto_server the S3 half says SKIPPED (make sets HEARTH_TEST_S3_REQUIRED=1, and
//! then it fails instead).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use hearth_config::{ObjectsBackend, S3Config, S3Credentials, StorageConfig};
use hearth_jobs::{Blobs, ObjectsError};
use hearth_testkit::s3::{ACCESS_KEY, BUCKET, PrivateS3, SECRET_KEY};

/// The `[storage]` of a Hearth whose files go to `s3`'s bucket under `prefix`.
fn s3_storage(s3: &PrivateS3, data_dir: &Path, prefix: &str) -> StorageConfig {
    StorageConfig {
        data_dir: data_dir.to_owned(),
        objects: ObjectsBackend::S3,
        s3: S3Config {
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            endpoint: Some(s3.endpoint()),
            path_style: true,
            credentials: Some(S3Credentials {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: SECRET_KEY.into(),
                session_token: None,
            }),
            ..S3Config::default()
        },
        ..StorageConfig::default()
    }
}

/// Runs `suite` on the folder store, then on a private S3 server's bucket.
async fn on_both<F, Fut>(suite: F)
where
    F: Fn(Blobs, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let local = Blobs::from_config(&StorageConfig {
        data_dir: dir.path().to_owned(),
        ..StorageConfig::default()
    })
    .unwrap();
    assert_eq!(local.backend(), ObjectsBackend::Local);
    suite(local, "local").await;
    let Some(s3) = PrivateS3::start() else {
        return;
    };
    let blobs = Blobs::from_config(&s3_storage(&s3, dir.path(), "hearth/test")).unwrap();
    assert_eq!(blobs.backend(), ObjectsBackend::S3);
    suite(blobs, "s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_exists_remove() {
    on_both(|blobs, name| async move {
        let sha = blobs.put(&b"hello"[..]).await.unwrap();
        assert_eq!(
            sha, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "{name}"
        );
        assert!(blobs.exists(&sha).await.unwrap(), "{name}");
        assert_eq!(&blobs.get(&sha).await.unwrap()[..], b"hello", "{name}");
        let object = blobs.open(&sha).await.unwrap();
        assert_eq!(object.size, 5, "{name}");
        blobs.remove(&sha).await.unwrap();
        assert!(!blobs.exists(&sha).await.unwrap(), "{name}");
        // Removing what is gone is not an error (a retried delete).
        blobs.remove(&sha).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_content_is_kept_once() {
    on_both(|blobs, name| async move {
        let a = blobs.put(Bytes::from_static(b"same bytes")).await.unwrap();
        let b = blobs.put(b"same bytes".to_vec()).await.unwrap();
        assert_eq!(a, b, "{name}");
        let (c, size) = blobs
            .put_stream(futures::stream::iter([
                Ok(Bytes::from_static(b"same ")),
                Ok(Bytes::from_static(b"bytes")),
            ]))
            .await
            .unwrap();
        assert_eq!((c.as_str(), size), (a.as_str(), 10), "{name}");
        // One remove takes the one copy: the callers count references, not the store.
        blobs.remove(&a).await.unwrap();
        assert!(!blobs.exists(&a).await.unwrap(), "{name}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_and_bad_digests_are_errors() {
    on_both(|blobs, name| async move {
        let absent = "0".repeat(64);
        assert!(!blobs.exists(&absent).await.unwrap(), "{name}");
        let e = blobs.get(&absent).await.unwrap_err();
        assert!(e.is_not_found(), "{name}: {e}");
        let e = blobs.open(&absent).await.unwrap_err();
        assert!(e.is_not_found(), "{name}: {e}");
        for bad in ["../../etc/passwd", "AB", &"A".repeat(64)] {
            let e = blobs.get(bad).await.unwrap_err();
            assert!(matches!(e, ObjectsError::BadDigest(_)), "{name}: {e}");
        }
    })
    .await;
}

/// 50 MiB in and out in chunks: `put_stream` sends parts as they come (never the
/// whole), and `open` yields the object in several chunks, none of them the whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_streams_both_ways() {
    on_both(|blobs, name| async move {
        const MIB: usize = 1 << 20;
        const TOTAL: usize = 50 * MIB;
        // Deterministic, not all one byte (so a mix-up of chunks changes the digest).
        let chunk = |i: usize| Bytes::from(vec![(i % 251) as u8; MIB]);
        let source = futures::stream::iter((0..TOTAL / MIB).map(move |i| Ok(chunk(i))));
        let (sha, size) = blobs.put_stream(source).await.unwrap();
        assert_eq!(size, TOTAL as u64, "{name}");
        assert_eq!(sha, sha2_of((0..TOTAL / MIB).map(chunk)), "{name}");
        let mut object = blobs.open(&sha).await.unwrap();
        assert_eq!(object.size, TOTAL as u64, "{name}");
        let (mut chunks, mut largest, mut total) = (0usize, 0usize, 0usize);
        let mut hasher = Sha::default();
        while let Some(c) = object.stream.next().await {
            let c = c.unwrap();
            chunks += 1;
            largest = largest.max(c.len());
            total += c.len();
            hasher.update(&c);
        }
        assert_eq!(total, TOTAL, "{name}");
        assert_eq!(
            hasher.hex(),
            sha,
            "{name}: the bytes read back are the bytes written"
        );
        assert!(
            chunks > 1 && largest <= 16 * MIB,
            "{name}: read as {chunks} chunks, the largest {largest} bytes: not streamed"
        );
        blobs.remove(&sha).await.unwrap();
    })
    .await;
}

/// A source that fails midway stores nothing, and leaves no staged object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stream_stores_nothing() {
    on_both(|blobs, name| async move {
        let source = futures::stream::iter([
            Ok(Bytes::from(vec![7u8; 1 << 20])),
            Err(std::io::Error::other("the client went away")),
        ]);
        let e = blobs.put_stream(source).await.unwrap_err();
        assert!(e.to_string().contains("went away"), "{name}: {e}");
        let sha = hearth_jobs::blobs::sha256_hex(&vec![7u8; 1 << 20]);
        assert!(!blobs.exists(&sha).await.unwrap(), "{name}");
    })
    .await;
}

/// Two replicas configured with the same bucket: what one stores, the other
/// reads and can remove; objects sit under the configured prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_bucket() {
    let Some(s3) = PrivateS3::start() else {
        return;
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Blobs::from_config(&s3_storage(&s3, a_dir.path(), "shared")).unwrap();
    let b = Blobs::from_config(&s3_storage(&s3, b_dir.path(), "shared")).unwrap();
    let sha = a.put(&b"an upload through replica A"[..]).await.unwrap();
    assert_eq!(
        &b.get(&sha).await.unwrap()[..],
        b"an upload through replica A"
    );
    assert_eq!(
        s3.keys(BUCKET),
        [format!("shared/{}/{sha}", &sha[..2])],
        "one object, under the prefix, named by its digest"
    );
    // Nothing went to either replica's own folder.
    assert!(!a_dir.path().join("files").exists() && !b_dir.path().join("files").exists());
    b.remove(&sha).await.unwrap();
    assert!(!a.exists(&sha).await.unwrap());
    // Another prefix in the same bucket is another store.
    let other = Blobs::from_config(&s3_storage(&s3, a_dir.path(), "other")).unwrap();
    let sha = a.put(&b"x"[..]).await.unwrap();
    assert!(!other.exists(&sha).await.unwrap());
}

/// The probe `hearth doctor` makes: ok on the bucket; a clear error for a bucket
/// that is not there and for a server that does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_tells_a_usable_store_from_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    Blobs::local(dir.path()).unwrap().probe().await.unwrap();
    let Some(mut s3) = PrivateS3::start() else {
        return;
    };
    let storage = s3_storage(&s3, dir.path(), "");
    Blobs::from_config(&storage).unwrap().probe().await.unwrap();
    assert!(
        s3.keys(BUCKET).is_empty(),
        "the probe cleans up after itself"
    );

    let mut missing = storage.clone();
    missing.s3.bucket = "no-such-bucket".into();
    let e = Blobs::from_config(&missing)
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    let shown = e.to_string();
    assert!(shown.contains("s3://no-such-bucket"), "{shown}");
    assert!(!shown.contains(SECRET_KEY), "{shown}");

    s3.stop();
    let quick = object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let e = Blobs::s3(&storage.s3, quick)
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&s3.endpoint()), "{e}");
}

fn sha2_of(chunks: impl Iterator<Item = Bytes>) -> String {
    let mut h = Sha::default();
    for c in chunks {
        h.update(&c);
    }
    h.hex()
}

/// SHA-256 over chunks, as hex.
#[derive(Default)]
struct Sha(sha2::Sha256);

impl Sha {
    fn update(&mut self, b: &[u8]) {
        sha2::Digest::update(&mut self.0, b);
    }

    fn hex(self) -> String {
        sha2::Digest::finalize(self.0)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
