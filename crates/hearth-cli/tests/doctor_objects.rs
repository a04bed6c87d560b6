//! `hearth doctor`'s check of where job files go, run as the real binary: the
//! folder is writable; a real private S3 server's bucket (moto_server) takes a
//! probe object; a bucket that is not there, a server that does not answer and a
//! wrong key (on a server that checks signatures) are a fail that says what to do,
//! never showing the secret key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hearth_testkit::s3::{ACCESS_KEY, BUCKET, PrivateS3, SECRET_KEY};
use serde_json::Value;

mod common;
use common::hearth;

/// Runs `hearth doctor --json` with `storage` as the rest of its `[storage]`
/// (after `data_dir`) and the test key pair in the environment; returns the exit
/// code and the `objects` check.
fn doctor(storage: &str) -> (i32, Value) {
    doctor_as(storage, ACCESS_KEY, SECRET_KEY)
}

/// [`doctor`] with this key pair in `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
fn doctor_as(storage: &str, access: &str, secret: &str) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    doctor_in(dir.path(), storage, access, secret)
}

/// [`doctor_as`] with its config and data folder (`data`) in `dir`.
fn doctor_in(dir: &std::path::Path, storage: &str, access: &str, secret: &str) -> (i32, Value) {
    let config = dir.join("hearth.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n{storage}\n\
             [sandbox]\nrequire = []\n\
             [[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:9\"\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    let out = hearth()
        .args(["doctor", "--json", "--config", config.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", access)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "the secret key was shown: {stdout}{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "objects")
        .cloned()
        .unwrap_or_else(|| panic!("no objects check: {report:#}"));
    (out.status.code().unwrap(), check)
}

fn s3(endpoint: &str, bucket: &str) -> String {
    format!(
        "objects = \"s3\"\n[storage.s3]\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\n\
         path_style = true\nprefix = \"hearth\"\n"
    )
}

#[test]
fn the_folder_is_checked_writable() {
    let (_, c) = doctor("");
    assert_eq!(c["status"], "ok", "{c}");
    assert!(c["reason"].as_str().unwrap().contains("writable"), "{c}");
    // A file where the folder should be: nothing can be stored.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/files"), "not a folder").unwrap();
    let (code, c) = doctor_in(dir.path(), "", ACCESS_KEY, SECRET_KEY);
    assert_eq!((code, c["status"].as_str()), (1, Some("fail")), "{c}");
    assert!(
        c["remedy"]
            .as_str()
            .unwrap()
            .contains("data_dir/files writable"),
        "{c}"
    );
}

#[test]
fn an_s3_bucket_is_checked_by_writing_reading_and_deleting() {
    let Some(mut server) = PrivateS3::start() else {
        return;
    };
    let (_, c) = doctor(&s3(&server.endpoint(), BUCKET));
    assert_eq!(c["status"], "ok", "{c}");
    let reason = c["reason"].as_str().unwrap();
    assert!(
        reason.contains("s3://hearth-test/hearth") && reason.contains("may write, read and delete"),
        "{c}"
    );
    assert!(
        server.keys(BUCKET).is_empty(),
        "the probe object is removed"
    );

    let (code, c) = doctor(&s3(&server.endpoint(), "no-such-bucket"));
    assert_eq!((code, c["status"].as_str()), (1, Some("fail")), "{c}");
    assert!(
        c["remedy"].as_str().unwrap().contains("create the bucket"),
        "{c}"
    );

    let endpoint = server.endpoint();
    server.stop();
    let (code, c) = doctor(&s3(&endpoint, BUCKET));
    assert_eq!((code, c["status"].as_str()), (1, Some("fail")), "{c}");
    assert!(c["reason"].as_str().unwrap().contains(&endpoint), "{c}");
    assert!(
        c["remedy"].as_str().unwrap().contains("endpoint runs"),
        "{c}"
    );
}

/// On a server that checks signatures: the user's key pair passes; the same key id
/// with a wrong secret is a fail that points at the key pair and its policy.
#[test]
fn a_wrong_key_is_refused_and_the_remedy_names_the_key_pair() {
    let Some(server) = PrivateS3::start_authenticating() else {
        return;
    };
    let (access, secret) = server.credentials().unwrap();
    let config = s3(&server.endpoint(), BUCKET);
    let (_, c) = doctor_as(&config, access, secret);
    assert_eq!(c["status"], "ok", "{c}");
    let (code, c) = doctor_as(&config, access, "not-the-secret-key");
    assert_eq!((code, c["status"].as_str()), (1, Some("fail")), "{c}");
    assert!(
        c["remedy"].as_str().unwrap().contains("access key pair"),
        "{c}"
    );
    let (code, c) = doctor_as(&config, "AKIANOSUCHKEY0000000", secret);
    assert_eq!((code, c["status"].as_str()), (1, Some("fail")), "{c}");
    assert!(
        c["remedy"].as_str().unwrap().contains("access key pair"),
        "{c}"
    );
}
