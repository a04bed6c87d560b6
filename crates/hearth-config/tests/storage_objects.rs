//! `[storage] objects` and `[storage.s3]`: the folder by default; S3 with a bucket,
//! an endpoint, and credentials from the environment or files, refused with what
//! to do when something is missing, and never printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hearth_config::{MapEnv, ObjectsBackend, load_str};

mod common;
use common::errors;

fn keys() -> MapEnv {
    MapEnv::new([
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "s3cr3t-never-shown"),
    ])
}

#[test]
fn the_folder_is_the_default_and_needs_no_credentials() {
    let c = load_str("", "defaults", &MapEnv::default()).unwrap();
    assert_eq!(c.storage.objects, ObjectsBackend::Local);
    assert!(c.storage.s3.credentials.is_none());
    // An [storage.s3] table is allowed while unused (kept for a later switch).
    let c = load_str(
        "[storage.s3]\nbucket = \"hearth-files\"\n",
        "hearth.toml",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(c.storage.objects, ObjectsBackend::Local);
}

#[test]
fn s3_with_a_bucket_and_the_standard_variables() {
    let c = load_str(
        "[storage]\nobjects = \"s3\"\n[storage.s3]\nbucket = \"hearth-files\"\nprefix = \"prod\"\n\
         endpoint = \"http://127.0.0.1:9000\"\npath_style = true\nregion = \"eu-west-1\"\n",
        "hearth.toml",
        &keys(),
    )
    .unwrap();
    let s3 = &c.storage.s3;
    assert_eq!(c.storage.objects, ObjectsBackend::S3);
    assert_eq!(
        (s3.bucket.as_str(), s3.prefix.as_str()),
        ("hearth-files", "prod")
    );
    assert!(s3.path_style);
    let creds = s3.credentials.as_ref().unwrap();
    assert_eq!(creds.access_key_id, "AKIAEXAMPLE");
    assert_eq!(creds.secret_access_key, "s3cr3t-never-shown");
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cr3t-never-shown"), "{shown}");
    assert!(!shown.contains("AKIAEXAMPLE"), "{shown}");
    // The generic override of a section's key reaches `objects`.
    let c = load_str(
        "[storage.s3]\nbucket = \"hearth-files\"\n",
        "hearth.toml",
        &MapEnv::new([
            ("HEARTH_STORAGE_OBJECTS", "s3"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
        ]),
    )
    .unwrap();
    assert_eq!(c.storage.objects, ObjectsBackend::S3);
}

#[test]
fn credentials_from_named_variables_and_files() {
    let secret = std::env::temp_dir().join(format!("hearth-s3-secret-{}", std::process::id()));
    std::fs::write(&secret, "from-a-file\n").unwrap();
    let text = format!(
        "[storage]\nobjects = \"s3\"\n[storage.s3]\nbucket = \"hearth-files\"\n\
         access_key_env = \"MINIO_USER\"\nsecret_key_file = \"{}\"\n",
        secret.display()
    );
    let c = load_str(
        &text,
        "hearth.toml",
        &MapEnv::new([("MINIO_USER", "hearth")]),
    )
    .unwrap();
    let creds = c.storage.s3.credentials.unwrap();
    assert_eq!(creds.access_key_id, "hearth");
    assert_eq!(creds.secret_access_key, "from-a-file");
    std::fs::remove_file(secret).unwrap();
}

#[test]
fn what_s3_lacks_is_named_with_the_fix() {
    let e = errors("[storage]\nobjects = \"s3\"\n", &MapEnv::default());
    let all = e.join("\n");
    assert!(
        all.contains("storage.s3.bucket") && all.contains("create it first"),
        "{all}"
    );
    assert!(
        all.contains("storage.s3.access_key_env") && all.contains("AWS_ACCESS_KEY_ID"),
        "{all}"
    );
    assert!(
        all.contains("storage.s3.secret_key_env") && all.contains("AWS_SECRET_ACCESS_KEY"),
        "{all}"
    );
    let e = errors(
        "[storage]\nobjects = \"s3\"\n[storage.s3]\nbucket = \"Bad_Bucket\"\n\
         endpoint = \"http://minio.internal:9000\"\nsecret_key_file = \"/nonexistent/key\"\n",
        &keys(),
    );
    let all = e.join("\n");
    assert!(all.contains("not a bucket name"), "{all}");
    assert!(
        all.contains("storage.s3.endpoint") && all.contains("allow_http"),
        "{all}"
    );
    assert!(
        all.contains("storage.s3.secret_key_file") && all.contains("/nonexistent/key"),
        "{all}"
    );
    assert!(!all.contains("s3cr3t-never-shown"), "{all}");
    let e = errors("[storage]\nobjects = \"gcs\"\n", &keys());
    assert!(e.join("\n").contains("storage.objects"), "{e:?}");
    // On a private network plain HTTP is a choice the config makes explicitly.
    load_str(
        "[storage]\nobjects = \"s3\"\n[storage.s3]\nbucket = \"hearth-files\"\n\
         endpoint = \"http://minio.internal:9000\"\nallow_http = true\n",
        "hearth.toml",
        &keys(),
    )
    .unwrap();
}
