//! [`Blobs`]: job files (uploads and artifacts) in an object store, each named by
//! its SHA-256 (`ab/abcdef…`), never by a client's file name, so equal content is
//! kept once.
//!
//! Two stores, one API ([`object_store`]): the default is the local folder
//! `data_dir/files` (the layout Hearth always had, so existing files stay
//! readable); `[storage] objects = "s3"` is an S3-compatible bucket (AWS S3, MinIO,
//! …) that every replica shares, so a file stored through one is served by all.
//! A reader never sees half an object: the folder store writes a staging file and
//! renames it into place (then syncs it), S3 makes an object visible whole.
//! Reads stream ([`Blobs::open`]); [`Blobs::put_stream`] stores content of any size
//! in parts while hashing it, so neither side holds a large object in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use hearth_config::{ObjectsBackend, S3Config, StorageConfig};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

/// How long a request to S3 is retried ([`Blobs::s3`]).
pub use object_store::RetryConfig;

/// The folder under `data_dir`.
pub const FILES_DIR: &str = "files";
/// Where [`Blobs::put_stream`] stages content until its digest is known.
const STAGING: &str = "staging";
/// Parts of a streamed upload in flight at once (each [`PART_BYTES`]).
const PARTS_IN_FLIGHT: usize = 2;
/// The size of each part of a streamed upload (S3's smallest but the last is 5 MiB).
const PART_BYTES: usize = 8 << 20;

/// The store of job files. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// Keys start with it (`[storage.s3] prefix`; nothing for the folder).
    prefix: Option<Key>,
    /// The folder, for the local store: files are synced to disk there.
    local_root: Option<PathBuf>,
    backend: ObjectsBackend,
    /// `data/files` or `s3://bucket/prefix at http://…`, for messages.
    describe: String,
}

/// A failure of the object store, naming the store (never a credential).
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The string is not a lowercase hex SHA-256, so it names no object.
    #[error("`{0}` is not a SHA-256 digest")]
    BadDigest(String),
    /// No object has this digest.
    #[error("{store} has no object {sha}")]
    NotFound { store: String, sha: String },
    /// The store could not be set up from the config.
    #[error("cannot use {store}: {message}")]
    Config { store: String, message: String },
    /// Reaching, reading or writing the store failed.
    #[error("{store}: {source}")]
    Store {
        store: String,
        #[source]
        source: object_store::Error,
    },
    /// A local file operation failed (the folder store's sync, a streamed source).
    #[error("{store}: {source}")]
    Io {
        store: String,
        #[source]
        source: std::io::Error,
    },
}

impl ObjectsError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ObjectsError::NotFound { .. })
    }
}

/// An object being read: its size and its bytes as they arrive.
pub struct Object {
    pub size: u64,
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object").field("size", &self.size).finish()
    }
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(64);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn valid_digest(sha: &str) -> bool {
    sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Blobs {
    /// The store `[storage]` names: `data_dir/files`, or the `[storage.s3]` bucket.
    /// The config must have been validated (the S3 credentials are resolved then).
    pub fn from_config(storage: &StorageConfig) -> Result<Blobs, ObjectsError> {
        match storage.objects {
            ObjectsBackend::Local => Blobs::local(&storage.data_dir),
            ObjectsBackend::S3 => Blobs::s3(&storage.s3, RetryConfig::default()),
        }
    }

    /// Files under `data_dir/files` (the folder is made if missing).
    pub fn local(data_dir: &Path) -> Result<Blobs, ObjectsError> {
        let root = data_dir.join(FILES_DIR);
        let describe = root.display().to_string();
        std::fs::create_dir_all(&root).map_err(|source| ObjectsError::Io {
            store: describe.clone(),
            source,
        })?;
        let store =
            LocalFileSystem::new_with_prefix(&root).map_err(|source| ObjectsError::Store {
                store: describe.clone(),
                source,
            })?;
        Ok(Blobs {
            store: Arc::new(store),
            prefix: None,
            local_root: Some(root),
            backend: ObjectsBackend::Local,
            describe,
        })
    }

    /// Files in the bucket `s3` names, with its resolved credentials; `retry` bounds
    /// how long a request is retried (`hearth doctor` wants an answer soon).
    pub fn s3(s3: &S3Config, retry: RetryConfig) -> Result<Blobs, ObjectsError> {
        let describe = s3.describe();
        let config_error = |message: String| ObjectsError::Config {
            store: describe.clone(),
            message,
        };
        let credentials = s3.credentials.as_ref().ok_or_else(|| {
            config_error(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the \
                 variables or files [storage.s3] names)"
                    .into(),
            )
        })?;
        let http = s3
            .endpoint
            .as_deref()
            .is_some_and(|e| e.to_ascii_lowercase().starts_with("http://"));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&s3.bucket)
            .with_region(&s3.region)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key)
            .with_virtual_hosted_style_request(!s3.path_style)
            .with_retry(retry)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(http)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        if let Some(token) = &credentials.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &s3.endpoint {
            let endpoint = endpoint.trim_end_matches('/');
            // Virtual-hosted addressing puts the bucket in the host name; object_store
            // takes a custom endpoint as already naming it.
            builder = builder.with_endpoint(if s3.path_style {
                endpoint.to_owned()
            } else {
                match endpoint.split_once("://") {
                    Some((scheme, host)) => format!("{scheme}://{}.{host}", s3.bucket),
                    None => endpoint.to_owned(),
                }
            });
        }
        let store = builder.build().map_err(|e| config_error(e.to_string()))?;
        let prefix = s3.prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(Key::parse(prefix).map_err(|e| config_error(format!("prefix: {e}")))?)
        };
        Ok(Blobs {
            store: Arc::new(store),
            prefix,
            local_root: None,
            backend: ObjectsBackend::S3,
            describe,
        })
    }

    /// Which store this is.
    pub fn backend(&self) -> ObjectsBackend {
        self.backend
    }

    /// The store in words: its folder, or `s3://bucket/prefix at ENDPOINT`.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    fn key_in(&self, rest: &str) -> Key {
        match &self.prefix {
            Some(p) => Key::from_iter(p.parts().chain(Key::from(rest).parts())),
            None => Key::from(rest),
        }
    }

    /// The key of the object with this digest; an error for a string that is not a
    /// digest (so no name can reach outside the store's folder or prefix).
    fn key(&self, sha: &str) -> Result<Key, ObjectsError> {
        if !valid_digest(sha) {
            return Err(ObjectsError::BadDigest(sha.chars().take(80).collect()));
        }
        Ok(self.key_in(&format!("{}/{sha}", &sha[..2])))
    }

    fn store_error(&self, sha: &str, source: object_store::Error) -> ObjectsError {
        match source {
            object_store::Error::NotFound { .. } => ObjectsError::NotFound {
                store: self.describe.clone(),
                sha: sha.to_owned(),
            },
            source => ObjectsError::Store {
                store: self.describe.clone(),
                source,
            },
        }
    }

    /// Stores `bytes` (once per content) and returns their digest.
    pub async fn put(&self, bytes: impl Into<Bytes>) -> Result<String, ObjectsError> {
        let bytes: Bytes = bytes.into();
        let sha = sha256_hex(&bytes);
        if self.exists(&sha).await? {
            return Ok(sha);
        }
        let key = self.key(&sha)?;
        self.store
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(|e| self.store_error(&sha, e))?;
        self.synced(&sha).await?;
        Ok(sha)
    }

    /// Stores what `stream` yields, of any size, without holding it whole: it goes
    /// to a staging object in parts while it is hashed, then becomes the object of
    /// its digest (once per content). Returns the digest and the size.
    pub async fn put_stream<S>(&self, stream: S) -> Result<(String, u64), ObjectsError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let staging = self.key_in(&format!("{STAGING}/{}", uuid::Uuid::new_v4().simple()));
        let upload = self
            .store
            .put_multipart(&staging)
            .await
            .map_err(|e| self.store_error("", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = std::pin::pin!(stream);
        let written: Result<(), ObjectsError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| ObjectsError::Io {
                    store: self.describe.clone(),
                    source,
                })?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.store_error("", e))?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        if let Err(e) = written {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.finish().await.map_err(|e| self.store_error("", e))?;
        let sha = hex(&hasher.finalize());
        let key = self.key(&sha)?;
        let placed = if self.exists(&sha).await? {
            Ok(())
        } else {
            // A rename in the folder; a server-side copy and a delete in S3.
            self.store.rename(&staging, &key).await
        };
        if placed.is_err() || self.exists_key(&staging).await.unwrap_or(false) {
            let _ = self.store.delete(&staging).await;
        }
        placed.map_err(|e| self.store_error(&sha, e))?;
        self.synced(&sha).await?;
        Ok((sha, size))
    }

    /// For the folder store: the object's bytes and its folder entry on disk before
    /// it is recorded (a crash then loses no file a job refers to).
    async fn synced(&self, sha: &str) -> Result<(), ObjectsError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let dir = root.join(&sha[..2]);
        let path = dir.join(sha);
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&path)?.sync_all()?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|source| ObjectsError::Io {
            store: self.describe.clone(),
            source,
        })
    }

    async fn exists_key(&self, key: &Key) -> Result<bool, object_store::Error> {
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether an object with this digest is stored.
    pub async fn exists(&self, sha: &str) -> Result<bool, ObjectsError> {
        let key = self.key(sha)?;
        self.exists_key(&key)
            .await
            .map_err(|e| self.store_error(sha, e))
    }

    /// The object with this digest, streamed: its bytes arrive in chunks as they
    /// are read, never held whole.
    pub async fn open(&self, sha: &str) -> Result<Object, ObjectsError> {
        let key = self.key(sha)?;
        let got = self
            .store
            .get(&key)
            .await
            .map_err(|e| self.store_error(sha, e))?;
        let size = got.meta.size;
        let stream = got.into_stream().map_err(std::io::Error::other).boxed();
        Ok(Object { size, stream })
    }

    /// The whole object with this digest (for small ones: a job's image).
    pub async fn get(&self, sha: &str) -> Result<Bytes, ObjectsError> {
        let key = self.key(sha)?;
        let got = self
            .store
            .get(&key)
            .await
            .map_err(|e| self.store_error(sha, e))?;
        got.bytes().await.map_err(|e| self.store_error(sha, e))
    }

    /// Writes the object with this digest to `target` (streamed), replacing it.
    pub async fn copy_to_file(&self, sha: &str, target: &Path) -> Result<u64, ObjectsError> {
        use tokio::io::AsyncWriteExt;
        let io = |source| ObjectsError::Io {
            store: self.describe.clone(),
            source,
        };
        let mut object = self.open(sha).await?;
        let mut file = tokio::fs::File::create(target).await.map_err(io)?;
        let mut n = 0u64;
        while let Some(chunk) = object.stream.next().await {
            let chunk = chunk.map_err(io)?;
            file.write_all(&chunk).await.map_err(io)?;
            n += chunk.len() as u64;
        }
        file.flush().await.map_err(io)?;
        Ok(n)
    }

    /// Removes the object with this digest; one already gone is not an error.
    pub async fn remove(&self, sha: &str) -> Result<(), ObjectsError> {
        let key = self.key(sha)?;
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error(sha, e)),
        }
    }

    /// Writes, reads back and removes a small probe object: the store is reachable,
    /// the credentials are accepted and may write (`hearth doctor`).
    pub async fn probe(&self) -> Result<(), ObjectsError> {
        let key = self.key_in(&format!(
            "{STAGING}/doctor-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let body = Bytes::from_static(b"hearth doctor probe\n");
        let fail = |source| ObjectsError::Store {
            store: self.describe.clone(),
            source,
        };
        self.store
            .put(&key, PutPayload::from(body.clone()))
            .await
            .map_err(fail)?;
        let read = async { self.store.get(&key).await?.bytes().await }.await;
        let removed = self.store.delete(&key).await;
        if read.map_err(fail)? != body {
            return Err(ObjectsError::Config {
                store: self.describe.clone(),
                message: "the probe object read back differs from what was written".into(),
            });
        }
        removed.map_err(fail)
    }
}

/// The `Content-Type` of an artifact, by its name's extension (the HTTP layer still
/// decides what may be shown inline: raster images only).
pub fn content_type_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "csv" => "text/csv",
        "json" => "application/json",
        "txt" | "md" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// Whether a file of this type may be shown inline in the UI's origin: raster
/// images only. Anything else (SVG and HTML included: they can carry script) is
/// offered as a download.
pub fn shown_inline(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn content_is_stored_once_by_digest_in_the_old_layout() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        let a = blobs.put(&b"hello"[..]).await.unwrap();
        assert_eq!(
            a,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(blobs.put(&b"hello"[..]).await.unwrap(), a);
        // Where Hearth always kept it: existing data stays readable.
        let path = dir.path().join("files").join(&a[..2]).join(&a);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(&blobs.get(&a).await.unwrap()[..], b"hello");
        assert!(matches!(
            blobs.get("../../etc/passwd").await,
            Err(ObjectsError::BadDigest(_))
        ));
        assert!(blobs.get("AB").await.is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_for("out/Chart.PNG"), "image/png");
        assert_eq!(content_type_for("table.csv"), "text/csv");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
        assert!(shown_inline(content_type_for("a.png")));
        assert!(
            !shown_inline(content_type_for("a.svg")) && !shown_inline(content_type_for("a.html"))
        );
    }
}
