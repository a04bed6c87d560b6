//! `hearth db import-files`, run as the real binary against a real private S3
//! server (moto_server): a single machine's job files (DATA_DIR/files) go into the
//! bucket under their digests, a large one in parts; a file whose bytes do not
//! match its name is named and not copied; a second run copies nothing again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use hearth_jobs::blobs::sha256_hex;
use hearth_testkit::s3::{ACCESS_KEY, BUCKET, PrivateS3, SECRET_KEY};

mod common;
use common::hearth;

/// Writes `bytes` into `files` where Hearth keeps them (`ab/abcdef…`), under
/// `name` when given (a damaged file), else their digest; returns the digest.
fn put(files: &Path, bytes: &[u8], name: Option<&str>) -> String {
    let sha = sha256_hex(bytes);
    let name = name.unwrap_or(&sha);
    let dir = files.join(&name[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    sha
}

/// `hearth db import-files --from FROM` with a config whose objects go to the
/// server's bucket under the prefix `imported`: exit code, stdout, stderr.
fn import(dir: &Path, from: &Path, endpoint: &str) -> (i32, String, String) {
    let config = dir.join("hearth.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = {:?}\nobjects = \"s3\"\n[storage.s3]\nbucket = \"{BUCKET}\"\n\
             endpoint = \"{endpoint}\"\npath_style = true\nprefix = \"imported\"\n\
             [[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:9\"\n",
            dir.join("new-data").display().to_string()
        ),
    )
    .unwrap();
    let out = hearth()
        .args(["db", "import-files", "--config"])
        .arg(&config)
        .arg("--from")
        .arg(from)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(
        !stdout.contains(SECRET_KEY) && !stderr.contains(SECRET_KEY),
        "the secret key was shown: {stdout}{stderr}"
    );
    (out.status.code().unwrap(), stdout, stderr)
}

#[test]
fn a_data_folders_job_files_go_into_the_bucket_once_each_checked_first() {
    let Some(server) = PrivateS3::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old-data");
    let files = old.join("files");
    let small = put(&files, b"a chart, as a job wrote it", None);
    let csv = put(&files, b"x,y\n1,2\n", None);
    // Larger than one part of a streamed upload (8 MiB).
    let big_bytes: Vec<u8> = (0..9_500_000u32).map(|i| (i % 251) as u8).collect();
    let big = put(&files, &big_bytes, None);
    // Bytes that are not what the name says, and what Hearth leaves beside its files.
    let wrong = format!("ee{}", &small[2..]);
    put(&files, b"not the content of its name", Some(&wrong));
    std::fs::create_dir_all(files.join("staging")).unwrap();
    std::fs::write(files.join("staging/leftover"), b"half an upload").unwrap();

    let (code, stdout, stderr) = import(dir.path(), &old, &server.endpoint());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("copying 4 files"), "{stdout}");
    assert!(
        stdout.contains("copied 3 files") && stdout.contains("0 were there already"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "damaged: {}",
            files.join(&wrong[..2]).join(&wrong).display()
        )),
        "{stderr}"
    );
    let mut keys = server.keys(BUCKET);
    keys.sort();
    let mut want: Vec<String> = [&small, &csv, &big]
        .iter()
        .map(|s| format!("imported/{}/{s}", &s[..2]))
        .collect();
    want.sort();
    assert_eq!(keys, want, "{stdout}");

    // The damaged file set aside: a second run finds the rest there and is done.
    std::fs::remove_file(files.join(&wrong[..2]).join(&wrong)).unwrap();
    let (code, stdout, stderr) = import(dir.path(), &old, &server.endpoint());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("copied 0 files") && stdout.contains("3 were there already"),
        "{stdout}"
    );

    // A folder that is not there is an error that names it.
    let (code, _, stderr) = import(dir.path(), &dir.path().join("nowhere"), &server.endpoint());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nowhere/files"), "{stderr}");
}
