//! `hearth models pull`: downloads a GGUF file over HTTP(S) into the models
//! directory, resuming a partial download, verifying an optional SHA-256 and the
//! GGUF header before the file takes its final name.
//!
//! The transfer goes to `<name>.part`; a second pull of the same URL continues it
//! with a `Range` request (a server that ignores ranges gets a fresh start). Only a
//! complete, verified file is renamed to `<name>`, so a model directory never holds
//! a half-written model under a real name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gguf::{self, GgufError, GgufInfo};

/// What a pull reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The transfer starts: the final size when the server says it, and the bytes
    /// already on disk from an earlier, interrupted pull.
    Started {
        total: Option<u64>,
        resumed_from: u64,
    },
    /// Bytes on disk so far (including the resumed part).
    Progress { downloaded: u64 },
    /// Download done; hashing and checking the header.
    Verifying,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    BadUrl(String),
    #[error("cannot reach {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error(
        "the download of {url} was interrupted after {downloaded} bytes ({source}); run the same command again to resume"
    )]
    Interrupted {
        url: String,
        downloaded: u64,
        source: reqwest::Error,
    },
    #[error(
        "checksum mismatch for {path}: expected sha256 {expected}, got {actual}; the download was deleted"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("the downloaded file is not a usable model: {0}; it was deleted")]
    NotAModel(GgufError),
    #[error(
        "not enough disk for the model in {}: it needs {} more and {} are free; free some space, or put the model on a larger disk (`path`)",
        dir.display(), crate::human_bytes(*needed), crate::human_bytes(*free)
    )]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        free: u64,
    },
    #[error(
        "another pull of {} is running (the API, `hearth models pull`, or a model's `url`); wait for it to end, then pull again",
        path.display()
    )]
    Busy { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A finished pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub path: PathBuf,
    pub sha256: String,
    pub info: GgufInfo,
    /// The file was already complete; nothing was downloaded.
    pub already_present: bool,
}

/// The file name a URL saves to: its last path segment, percent-decoded, without
/// the query. Refuses names that could leave the models directory.
pub fn file_name_for(url: &reqwest::Url) -> Result<String, PullError> {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    let name = percent_decode(last);
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(PullError::BadUrl(format!(
            "cannot take a file name from {url}; give a URL whose path ends with the file name, e.g. .../model.Q4_K_M.gguf"
        )));
    }
    Ok(name)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes an unprivileged writer may still use on `dir`'s filesystem.
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Downloads `url` into `dir`, under the URL's file name. `sha256` (hex, any case)
/// is checked when given.
pub async fn pull(
    url: &str,
    dir: &Path,
    sha256: Option<&str>,
    on_event: impl FnMut(PullEvent),
) -> Result<Pulled, PullError> {
    let name = file_name_for(&parse(url)?)?;
    pull_to(url, &dir.join(name), sha256, on_event).await
}

fn parse(url: &str) -> Result<reqwest::Url, PullError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| PullError::BadUrl(format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(PullError::BadUrl(format!(
            "`{url}`: only http:// and https:// URLs can be pulled"
        )));
    }
    Ok(parsed)
}

/// Downloads `url` to the file `dest` (an embedded model's `path`), as [`pull`].
pub async fn pull_to(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    mut on_event: impl FnMut(PullEvent),
) -> Result<Pulled, PullError> {
    let parsed = parse(url)?;
    let expected = match sha256 {
        Some(h) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => {
            Some(h.to_ascii_lowercase())
        }
        Some(h) => {
            return Err(PullError::BadUrl(format!(
                "`{h}` is not a SHA-256 (64 hex digits)"
            )));
        }
        None => None,
    };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PullError::Io { path, source }
    };
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Err(PullError::BadUrl(format!(
            "`{}` is not a file path to download to",
            dest.display()
        )));
    };
    tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    let mut part_name = name.to_owned();
    part_name.push(".part");
    let part = dir.join(part_name);
    let dest = dest.to_owned();

    if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
        let actual = hash_file(&dest).await?;
        if expected.as_ref().is_none_or(|e| *e == actual) {
            let info = gguf::inspect(&dest).map_err(PullError::NotAModel)?;
            return Ok(Pulled {
                path: dest,
                sha256: actual,
                info,
                already_present: true,
            });
        }
        // A different file under the same name: fetch the wanted one beside it first.
    }

    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PullError::Request {
            url: url.to_owned(),
            source: e,
        })?;

    let mut have = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let mut req = client.get(parsed.clone());
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().await.map_err(|e| PullError::Request {
        url: url.to_owned(),
        source: e,
    })?;
    if resp.status() == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
        // The partial file is as long as (or longer than) the resource: start over.
        have = 0;
        resp = client
            .get(parsed.clone())
            .send()
            .await
            .map_err(|e| PullError::Request {
                url: url.to_owned(),
                source: e,
            })?;
    }
    if !resp.status().is_success() {
        return Err(PullError::Status {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    let resuming = have > 0 && resp.status() == reqwest::StatusCode::PARTIAL_CONTENT;
    if !resuming {
        have = 0;
    }
    let total = resp.content_length().map(|n| n + have);
    // Refused before a byte is written when the server says it will not fit.
    if let Some(needed) = resp.content_length()
        && let Some(free) = free_bytes(dir)
        && free < needed
    {
        return Err(PullError::NoSpace {
            dir: dir.to_owned(),
            needed,
            free,
        });
    }

    // One pull of a file at a time: a second (another API request, the CLI beside
    // the server) would write into the same partial file. Taken before the first
    // byte is written, held to the end.
    let _busy = lock_part(&part, &dest)?;
    let mut hasher = Sha256::new();
    let mut file = if resuming {
        // The hash covers the whole file, so the part already on disk goes first.
        hash_into(&part, &mut hasher).await?;
        tokio::fs::OpenOptions::new()
            .append(true)
            .open(&part)
            .await
            .map_err(io(&part))?
    } else {
        tokio::fs::File::create(&part).await.map_err(io(&part))?
    };
    on_event(PullEvent::Started {
        total,
        resumed_from: have,
    });

    let mut body = resp.bytes_stream();
    let mut downloaded = have;
    while let Some(next) = body.next().await {
        let bytes = match next {
            Ok(b) => b,
            Err(e) => {
                let _ = file.flush().await;
                return Err(PullError::Interrupted {
                    url: url.to_owned(),
                    downloaded,
                    source: e,
                });
            }
        };
        file.write_all(&bytes).await.map_err(io(&part))?;
        hasher.update(&bytes);
        downloaded += bytes.len() as u64;
        on_event(PullEvent::Progress { downloaded });
    }
    file.flush().await.map_err(io(&part))?;
    file.sync_all().await.map_err(io(&part))?;
    drop(file);

    on_event(PullEvent::Verifying);
    let actual = hex_digest(hasher);
    if let Some(expected) = expected
        && expected != actual
    {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(PullError::Checksum {
            path: dest,
            expected,
            actual,
        });
    }
    let info = match gguf::inspect(&part) {
        Ok(info) => info,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(PullError::NotAModel(e));
        }
    };
    tokio::fs::rename(&part, &dest).await.map_err(io(&dest))?;
    let mut info = info;
    info.path = dest.clone();
    Ok(Pulled {
        path: dest,
        sha256: actual,
        info,
        already_present: false,
    })
}

/// Opens (creating, never truncating) the partial file and takes an exclusive,
/// non-blocking lock on it, released when the returned handle is dropped.
fn lock_part(part: &Path, dest: &Path) -> Result<std::fs::File, PullError> {
    let failed = |source: std::io::Error| PullError::Io {
        path: part.to_owned(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .map_err(failed)?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(PullError::Busy {
            path: dest.to_owned(),
        }),
        Err(e) => Err(failed(std::io::Error::from(e))),
    }
}

async fn hash_into(path: &Path, hasher: &mut Sha256) -> Result<(), PullError> {
    let err = |source| PullError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = tokio::fs::File::open(path).await.map_err(err)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await.map_err(err)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// SHA-256 of a file, lowercase hex.
pub async fn hash_file(path: &Path) -> Result<String, PullError> {
    let mut h = Sha256::new();
    hash_into(path, &mut h).await?;
    Ok(hex_digest(h))
}

fn hex_digest(h: Sha256) -> String {
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_second_pull_of_the_same_file_is_refused_while_the_first_runs() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("m.gguf");
        let part = dir.path().join("m.gguf.part");
        let held = lock_part(&part, &dest).unwrap();
        let url = server(b"GGUF and more".to_vec(), Arc::default()).await;
        let e = pull_to(&url, &dest, None, |_| {}).await.unwrap_err();
        assert!(matches!(e, PullError::Busy { .. }), "{e}");
        assert!(e.to_string().contains("another pull of"), "{e}");
        drop(held);
        assert!(lock_part(&part, &dest).is_ok());
    }

    /// How the test server answers.
    #[derive(Default)]
    struct Plan {
        /// Close the connection after this many body bytes (a dropped transfer).
        cut_after: Option<usize>,
        /// Answer `Range` requests with 206.
        ranges: bool,
        /// Answer every request with this status and no body.
        status: Option<u16>,
        /// Announce this `content-length` (and send nothing): a file too big for the disk.
        claim_length: Option<u64>,
        /// `Range` headers seen, in order.
        seen_ranges: Vec<Option<String>>,
    }

    /// A minimal HTTP/1.1 file server on 127.0.0.1:0 serving `body` at any path.
    async fn server(body: Vec<u8>, plan: Arc<Mutex<Plan>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let body = body.clone();
                let plan = plan.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if sock.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let range = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("range: ")
                            .map(str::to_owned)
                    });
                    let (cut, ranges, status, claim) = {
                        let mut p = plan.lock().unwrap();
                        p.seen_ranges.push(range.clone());
                        (p.cut_after, p.ranges, p.status, p.claim_length)
                    };
                    if let Some(n) = claim {
                        let r = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n"
                        );
                        let _ = sock.write_all(r.as_bytes()).await;
                        return;
                    }
                    if let Some(status) = status {
                        let r = format!(
                            "HTTP/1.1 {status} Nope\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = sock.write_all(r.as_bytes()).await;
                        return;
                    }
                    let start = match (&range, ranges) {
                        (Some(r), true) => r
                            .trim_start_matches("bytes=")
                            .trim_end_matches('-')
                            .parse::<usize>()
                            .unwrap(),
                        _ => 0,
                    };
                    let part = &body[start..];
                    let head = if start > 0 {
                        format!(
                            "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {}-{}/{}\r\nconnection: close\r\n\r\n",
                            part.len(),
                            start,
                            body.len() - 1,
                            body.len()
                        )
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            part.len()
                        )
                    };
                    let _ = sock.write_all(head.as_bytes()).await;
                    let n = cut.map_or(part.len(), |c| c.min(part.len()));
                    let _ = sock.write_all(&part[..n]).await;
                    let _ = sock.flush().await;
                });
            }
        });
        format!("http://{addr}/files/tiny.gguf")
    }

    fn sha(bytes: &[u8]) -> String {
        hex_digest({
            let mut h = Sha256::new();
            h.update(bytes);
            h
        })
    }

    fn big_gguf() -> Vec<u8> {
        // The tiny model plus padding makes a body large enough to cut in the middle.
        let mut b = crate::gguf::tests::tiny_gguf();
        b.extend(std::iter::repeat_n(7u8, 256 * 1024));
        b
    }

    #[tokio::test]
    async fn a_file_bigger_than_the_free_disk_is_refused_before_writing() {
        let plan = Arc::new(Mutex::new(Plan {
            claim_length: Some(1 << 60),
            ..Plan::default()
        }));
        let url = server(Vec::new(), plan).await;
        let dir = tempfile::tempdir().unwrap();
        let e = pull(&url, dir.path(), None, |_| {}).await.unwrap_err();
        assert!(matches!(e, PullError::NoSpace { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("not enough disk for the model in") && msg.contains("free"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }

    #[tokio::test]
    async fn downloads_verifies_and_reports_progress() {
        let body = big_gguf();
        let plan = Arc::new(Mutex::new(Plan::default()));
        let url = server(body.clone(), plan.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let mut events = Vec::new();
        let got = pull(&url, dir.path(), Some(&sha(&body).to_uppercase()), |e| {
            events.push(e)
        })
        .await
        .unwrap();
        assert_eq!(got.path, dir.path().join("tiny.gguf"));
        assert_eq!(std::fs::read(&got.path).unwrap(), body);
        assert_eq!(got.sha256, sha(&body));
        assert_eq!(got.info.architecture(), Some("llama"));
        assert_eq!(
            events.first(),
            Some(&PullEvent::Started {
                total: Some(body.len() as u64),
                resumed_from: 0
            })
        );
        assert!(events.contains(&PullEvent::Progress {
            downloaded: body.len() as u64
        }));
        assert!(!dir.path().join("tiny.gguf.part").exists());
        // A second pull finds it complete.
        let again = pull(&url, dir.path(), None, |_| {}).await.unwrap();
        assert!(again.already_present);
        assert_eq!(plan.lock().unwrap().seen_ranges.len(), 1);
    }

    #[tokio::test]
    async fn an_interrupted_download_resumes() {
        let body = big_gguf();
        let plan = Arc::new(Mutex::new(Plan {
            cut_after: Some(100_000),
            ranges: true,
            ..Plan::default()
        }));
        let url = server(body.clone(), plan.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let e = pull(&url, dir.path(), Some(&sha(&body)), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(e, PullError::Interrupted { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("run the same command again to resume")
        );
        let part = dir.path().join("tiny.gguf.part");
        let have = std::fs::metadata(&part).unwrap().len();
        assert!(have > 0 && have < body.len() as u64, "{have}");
        assert!(!dir.path().join("tiny.gguf").exists());

        plan.lock().unwrap().cut_after = None;
        let mut started = None;
        let got = pull(&url, dir.path(), Some(&sha(&body)), |e| {
            if let PullEvent::Started {
                resumed_from,
                total,
            } = e
            {
                started = Some((resumed_from, total));
            }
        })
        .await
        .unwrap();
        assert_eq!(started, Some((have, Some(body.len() as u64))));
        assert_eq!(std::fs::read(&got.path).unwrap(), body);
        let seen = plan.lock().unwrap().seen_ranges.clone();
        assert_eq!(seen, vec![None, Some(format!("bytes={have}-"))]);
    }

    #[tokio::test]
    async fn a_server_without_ranges_restarts_the_download() {
        let body = big_gguf();
        let plan = Arc::new(Mutex::new(Plan {
            cut_after: Some(50_000),
            ..Plan::default()
        }));
        let url = server(body.clone(), plan.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        pull(&url, dir.path(), None, |_| {}).await.unwrap_err();
        plan.lock().unwrap().cut_after = None;
        let got = pull(&url, dir.path(), None, |_| {}).await.unwrap();
        assert_eq!(std::fs::read(&got.path).unwrap(), body);
    }

    #[tokio::test]
    async fn a_wrong_checksum_deletes_the_download() {
        let body = big_gguf();
        let url = server(body.clone(), Arc::new(Mutex::new(Plan::default()))).await;
        let dir = tempfile::tempdir().unwrap();
        let wrong = "0".repeat(64);
        let e = pull(&url, dir.path(), Some(&wrong), |_| {})
            .await
            .unwrap_err();
        let PullError::Checksum {
            expected, actual, ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!(expected, &wrong);
        assert_eq!(actual, &sha(&body));
        assert!(e.to_string().contains("checksum mismatch"));
        assert!(!dir.path().join("tiny.gguf").exists());
        assert!(!dir.path().join("tiny.gguf.part").exists());
        let e = pull(&url, dir.path(), Some("abc"), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(e, PullError::BadUrl(_)));
    }

    #[tokio::test]
    async fn errors_name_the_problem() {
        let plan = Arc::new(Mutex::new(Plan {
            status: Some(404),
            ..Plan::default()
        }));
        let url = server(Vec::new(), plan).await;
        let dir = tempfile::tempdir().unwrap();
        let e = pull(&url, dir.path(), None, |_| {}).await.unwrap_err();
        assert!(matches!(e, PullError::Status { status: 404, .. }), "{e}");

        let url = server(
            b"<html>login</html>".to_vec(),
            Arc::new(Mutex::new(Plan::default())),
        )
        .await;
        let e = pull(&url, dir.path(), None, |_| {}).await.unwrap_err();
        assert!(e.to_string().contains("not a GGUF model file"), "{e}");
        assert!(!dir.path().join("tiny.gguf").exists());

        let e = pull("ftp://x/y.gguf", dir.path(), None, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(e, PullError::BadUrl(_)));
        let e = pull("http://127.0.0.1:1/m.gguf", dir.path(), None, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(e, PullError::Request { .. }), "{e}");
    }

    #[test]
    fn names_from_urls() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            file_name_for(&u("https://h/x/m%20q.gguf?download=true")).unwrap(),
            "m q.gguf"
        );
        assert!(file_name_for(&u("https://h/")).is_err());
        assert!(file_name_for(&u("https://h/a/%2e%2e")).is_err());
        assert!(file_name_for(&u("https://h/a/x%2Fy.gguf")).is_err());
    }
}
