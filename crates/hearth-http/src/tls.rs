//! HTTPS served by Hearth itself (`[server.tls]`), with rustls.
//!
//! `self-signed`: a certificate made at the first start for the host's names and
//! addresses, kept in `data_dir/tls/` so that it stays the same across restarts
//! (clients pin it). `files`: a certificate and key read from PEM files (certbot's,
//! a company CA's), read again by [`Tls::reload`] (SIGHUP) without dropping a
//! connection: the next handshake uses the new one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hearth_config::{TlsConfig, TlsMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// Why HTTPS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source} (server.tls)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM {what} (server.tls)")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}: {message} (server.tls)")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write the self-signed certificate in {dir}: {source}")]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Where the certificate comes from, for reloads.
#[derive(Debug)]
struct Source {
    cert: PathBuf,
    key: PathBuf,
}

/// A TLS acceptor whose certificate can be swapped while serving.
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<Current>,
    source: Source,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("source", &self.source).finish()
    }
}

/// The certificate handshakes use now.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Tls {
    /// HTTPS as `config` asks, or `None` for plain HTTP. A self-signed certificate
    /// is made (once) under `data_dir/tls/` for `listen` and the host's names.
    pub fn from_config(
        config: &TlsConfig,
        data_dir: &Path,
        listen: &str,
    ) -> Result<Option<Arc<Tls>>, TlsError> {
        let source = match config.mode {
            TlsMode::Off => return Ok(None),
            TlsMode::Files => match (&config.cert, &config.key) {
                (Some(cert), Some(key)) => Source {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                _ => {
                    return Err(TlsError::Setup(
                        "mode = \"files\" needs `cert` and `key`".into(),
                    ));
                }
            },
            TlsMode::SelfSigned => self_signed(&data_dir.join("tls"), &names(config, listen))?,
        };
        let key = load(&source)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(key))));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            current,
            source,
        })))
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The certificate file served (for the banner and the docs' "pin this").
    pub fn cert_path(&self) -> &Path {
        &self.source.cert
    }

    /// Reads the certificate and key again; on an error the one in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load(&self.source)?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }
}

/// The names a self-signed certificate is made for: `localhost`, the host's name,
/// loopback, the listen address when it is a specific one, and `names`.
fn names(config: &TlsConfig, listen: &str) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    if let Ok(addr) = listen.parse::<SocketAddr>()
        && !addr.ip().is_unspecified()
    {
        names.push(addr.ip().to_string());
    }
    names.extend(config.names.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// The self-signed certificate in `dir`, made now if there is none.
fn self_signed(dir: &Path, names: &[String]) -> Result<Source, TlsError> {
    let source = Source {
        cert: dir.join("self-signed.crt"),
        key: dir.join("self-signed.key"),
    };
    if source.cert.exists() && source.key.exists() {
        return Ok(source);
    }
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let write = |path: &Path, text: &str, mode: u32| -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // Written whole under a temporary name, then renamed: a crash never
        // leaves half a key.
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    std::fs::create_dir_all(dir)
        .and_then(|()| write(&source.key, &made.key_pair.serialize_pem(), 0o600))
        .and_then(|()| write(&source.cert, &made.cert.pem(), 0o644))
        .map_err(|source| TlsError::Write {
            dir: dir.to_path_buf(),
            source,
        })?;
    tracing::info!(cert = %source.cert.display(), names = %names.join(", "), "made a self-signed certificate for HTTPS");
    Ok(source)
}

fn load(source: &Source) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| TlsError::Read {
            path: path.to_path_buf(),
            source: e,
        })
    };
    let cert_pem = read(&source.cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            path: source.cert.clone(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: source.cert.clone(),
            what: "certificate",
        });
    }
    let key_pem = read(&source.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
        path: source.key.clone(),
        message: format!("no usable private key: {e}"),
    })?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::Invalid {
            path: source.key.clone(),
            message: e.to_string(),
        })?;
    let key = CertifiedKey::new(certs, signer);
    // A key that does not match the certificate would fail every handshake.
    key.keys_match().map_err(|e| TlsError::Invalid {
        path: source.key.clone(),
        message: format!(
            "the key does not match the certificate {}: {e}",
            source.cert.display()
        ),
    })?;
    Ok(key)
}
