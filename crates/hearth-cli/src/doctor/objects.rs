//! `[storage] objects`: where job files (uploads, artifacts) go can take them. For
//! the folder, `data_dir/files` is writable (a file written and removed there); for S3, the bucket answers, takes the
//! credentials and lets them write, read and delete: a small probe object is
//! stored, read back and removed (under `staging/`, never a job's file).

use std::time::Duration;

use hearth_config::{ObjectsBackend, StorageConfig};
use hearth_jobs::blobs::RetryConfig;
use hearth_jobs::{Blobs, ObjectsError};

use super::report::Check;

/// How long doctor waits for the bucket, all tries together.
const TIMEOUT: Duration = Duration::from_secs(15);

pub fn check(storage: &StorageConfig, checks: &mut Vec<Check>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            checks.push(Check::fail(
                "servers",
                "objects",
                format!("cannot start the check: {e}"),
                "run doctor again",
            ));
            return;
        }
    };
    checks.push(rt.block_on(probe(storage)));
}

/// The folder store: `data_dir/files` takes a file (written and removed in the
/// folder itself: no subfolder is left that a later Hearth, running as another
/// user than doctor, could not write into).
fn local(storage: &StorageConfig) -> Check {
    let dir = storage.data_dir.join(hearth_jobs::blobs::FILES_DIR);
    let shown = dir.display();
    let probe_file = dir.join(format!(".hearth-doctor-{}", std::process::id()));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let w = std::fs::write(&probe_file, b"ok");
        let _ = std::fs::remove_file(&probe_file);
        w
    });
    match written {
        Ok(()) => Check::ok(
            "servers",
            "objects",
            format!("job files are kept in {shown} (writable)"),
        ),
        Err(e) => Check::fail(
            "servers",
            "objects",
            format!("cannot write job files in {shown}: {e}"),
            "make storage.data_dir/files writable by the user Hearth runs as, or set \
             [storage] objects = \"s3\"",
        ),
    }
}

async fn probe(storage: &StorageConfig) -> Check {
    if storage.objects == ObjectsBackend::Local {
        return local(storage);
    }
    let quick = RetryConfig {
        max_retries: 1,
        retry_timeout: TIMEOUT,
        ..Default::default()
    };
    let blobs = Blobs::s3(&storage.s3, quick);
    let result = match blobs {
        Ok(b) => tokio::time::timeout(TIMEOUT, b.probe())
            .await
            .unwrap_or_else(|_| {
                Err(ObjectsError::Config {
                    store: b.describe().to_owned(),
                    message: format!("no answer within {} s", TIMEOUT.as_secs()),
                })
            })
            .map(|()| b),
        Err(e) => Err(e),
    };
    match result {
        Ok(b) => Check::ok(
            "servers",
            "objects",
            format!(
                "job files are kept in {}: reachable, the credentials may write, read and delete",
                b.describe()
            ),
        ),
        Err(e) => {
            let (reason, remedy) = describe_s3(&e);
            Check::fail("servers", "objects", reason, remedy)
        }
    }
}

/// What failed with the bucket, and what to do about it.
fn describe_s3(e: &ObjectsError) -> (String, &'static str) {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let remedy = if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
        "create the bucket (Hearth does not create buckets), or fix [storage.s3] bucket"
    } else if lower.contains("accessdenied")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("forbidden")
        || lower.contains("unauthenticated")
        || lower.contains("permission")
    {
        "check the access key pair (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or what [storage.s3] \
         names) and that its policy allows s3:PutObject, s3:GetObject and s3:DeleteObject on the bucket"
    } else if matches!(e, ObjectsError::Config { .. }) {
        "fix [storage.s3] (bucket, endpoint, region, credentials); `hearth config check` names the key"
    } else {
        "check that the server at [storage.s3] endpoint runs and that this host reaches it \
         (host, port, firewall, https vs http, path_style for MinIO)"
    };
    (format!("job files cannot be stored: {text}"), remedy)
}
