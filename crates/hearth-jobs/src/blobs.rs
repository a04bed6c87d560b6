//! [`Blobs`]: uploads and artifacts as files named by their SHA-256 under
//! `data_dir/files` (`ab/abcdef…`), never by a client's file name. Writes go to a
//! temporary file renamed into place, so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The folder under `data_dir`.
pub const FILES_DIR: &str = "files";

#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
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
    /// Blobs under `data_dir/files`.
    pub fn new(data_dir: &Path) -> Blobs {
        Blobs {
            root: data_dir.join(FILES_DIR),
        }
    }

    /// Where the file with this digest lives; `None` for a string that is not a
    /// digest (so no name can reach outside the folder).
    pub fn path(&self, sha: &str) -> Option<PathBuf> {
        valid_digest(sha).then(|| self.root.join(&sha[..2]).join(sha))
    }

    /// Stores `bytes` (once per content) and returns their digest.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let sha = sha256_hex(bytes);
        let dir = self.root.join(&sha[..2]);
        let path = dir.join(&sha);
        if path.exists() {
            return Ok(sha);
        }
        std::fs::create_dir_all(&dir)?;
        let mut tmp = tempfile_in(&dir)?;
        tmp.1.write_all(bytes)?;
        tmp.1.sync_all()?;
        std::fs::rename(&tmp.0, &path)?;
        Ok(sha)
    }

    /// Removes the file with this digest; one already gone is not an error.
    pub fn remove(&self, sha: &str) -> std::io::Result<()> {
        let Some(path) = self.path(sha) else {
            return Ok(());
        };
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn get(&self, sha: &str) -> std::io::Result<Vec<u8>> {
        let path = self.path(sha).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a SHA-256 digest")
        })?;
        std::fs::read(path)
    }
}

/// A new file in `dir` with a unique name.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, f))
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

    #[test]
    fn content_is_stored_once_by_digest() {
        let dir = std::env::temp_dir().join(format!("hearth-blobs-{}", uuid::Uuid::new_v4()));
        let blobs = Blobs::new(&dir);
        let a = blobs.put(b"hello").unwrap();
        assert_eq!(
            a,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(blobs.put(b"hello").unwrap(), a);
        assert_eq!(blobs.get(&a).unwrap(), b"hello");
        assert!(blobs.path("../../etc/passwd").is_none());
        assert!(blobs.get("AB").is_err());
        assert_eq!(content_type_for("out/Chart.PNG"), "image/png");
        assert_eq!(content_type_for("table.csv"), "text/csv");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
        assert!(shown_inline(content_type_for("a.png")));
        assert!(
            !shown_inline(content_type_for("a.svg")) && !shown_inline(content_type_for("a.html"))
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
