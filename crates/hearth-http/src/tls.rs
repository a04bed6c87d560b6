//! HTTPS served by Hearth itself (`[server.tls]`), with rustls.
//!
//! `self-signed`: a certificate made at the first start for the host's names and
//! addresses, kept in `data_dir/tls/` so that it stays the same across restarts
//! (clients pin it). `files`: a certificate and key read from PEM files (certbot's,
//! a company CA's), read again by [`Tls::reload`] (SIGHUP) without dropping a
//! connection: the next handshake uses the new one. `acme`: a certificate from an
//! ACME CA, ordered and renewed by [`crate::acme`] and swapped in the same way; the
//! resolver also answers the CA's TLS-ALPN-01 handshakes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hearth_config::{TlsConfig, TlsMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::acme::{ACME_TLS_ALPN, Acme, AcmeError, AcmeStatus};

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
    current: Arc<Resolver>,
    source: Source,
    acme: Option<Arc<Acme>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("source", &self.source).finish()
    }
}

/// The certificate handshakes use now, and the ACME challenge certificates by
/// name while an order is being validated.
#[derive(Debug)]
pub(crate) struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Resolver {
    fn new(key: CertifiedKey) -> Resolver {
        Resolver {
            current: RwLock::new(Arc::new(key)),
            challenges: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn set_current(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
    }

    pub(crate) fn add_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.challenges
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(domain.to_ascii_lowercase(), key);
    }

    pub(crate) fn clear_challenges(&self) {
        self.challenges
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // The CA's TLS-ALPN-01 check offers `acme-tls/1` alone; it gets the
        // challenge certificate for the name it asks, and nothing else does.
        if hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
        {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&name)
                .cloned();
        }
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

impl Tls {
    /// HTTPS as `config` asks, or `None` for plain HTTP. A self-signed certificate
    /// is made (once) under `data_dir/tls/` for `listen` and the host's names.
    /// `acme` starts its ordering and renewing task on the current tokio runtime
    /// (it ends when the returned `Tls` is dropped); until a certificate is issued
    /// a temporary self-signed one is served.
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
            TlsMode::Acme => {
                // The stand-in until the CA's certificate is there.
                let mut names = names(config, listen);
                names.extend(config.domains.iter().cloned());
                self_signed(&data_dir.join("tls"), &names)?
            }
        };
        let key = load(&source)?;
        let current = Arc::new(Resolver::new(key));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut acme = None;
        if config.mode == TlsMode::Acme {
            server.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
            let a = Arc::new(Acme::new(config, data_dir, listen, current.clone())?);
            if a.load_stored()? {
                tracing::info!(cert = %a.cert_path().display(), "serving the stored ACME certificate");
            } else {
                tracing::info!(
                    domains = %config.domains.join(", "),
                    "no ACME certificate yet: serving a temporary self-signed one until it is issued"
                );
            }
            Acme::spawn(&a)?;
            acme = Some(a);
        }
        Ok(Some(Arc::new(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            current,
            source,
            acme,
        })))
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The certificate file served (for the banner and the docs' "pin this"); with
    /// ACME, where the issued one is (or will be) stored.
    pub fn cert_path(&self) -> &Path {
        match &self.acme {
            Some(acme) => acme.cert_path(),
            None => &self.source.cert,
        }
    }

    /// Reads the certificate and key again; on an error the one in use stays.
    /// With ACME: the stored certificate, if there is one, and a fresh look at
    /// whether it is due.
    pub fn reload(&self) -> Result<(), TlsError> {
        if let Some(acme) = &self.acme {
            acme.load_stored()?;
            acme.wake();
            return Ok(());
        }
        let key = load(&self.source)?;
        self.current.set_current(Arc::new(key));
        Ok(())
    }

    /// Where ACME stands (`None` in the other modes): for the status file.
    pub fn acme_status(&self) -> Option<AcmeStatus> {
        self.acme.as_ref().map(|a| a.status())
    }

    /// Orders a new ACME certificate now, whether or not one is due, and serves it
    /// once issued. Without ACME, nothing to do.
    pub async fn renew_now(&self) -> Result<(), AcmeError> {
        match &self.acme {
            Some(acme) => acme.order().await,
            None => Ok(()),
        }
    }
}

/// Whether a finished handshake was the CA's TLS-ALPN-01 check: such a
/// connection carries no HTTP and is closed at once (RFC 8737).
pub fn is_acme_challenge(conn: &rustls::ServerConnection) -> bool {
    conn.alpn_protocol() == Some(ACME_TLS_ALPN)
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
    std::fs::create_dir_all(dir)
        .and_then(|()| write(&source.key, &made.signing_key.serialize_pem(), 0o600))
        .and_then(|()| write(&source.cert, &made.cert.pem(), 0o644))
        .map_err(|source| TlsError::Write {
            dir: dir.to_path_buf(),
            source,
        })?;
    tracing::info!(cert = %source.cert.display(), names = %names.join(", "), "made a self-signed certificate for HTTPS");
    Ok(source)
}

/// Writes `text` to `path` with `mode`, whole: under a temporary name, then
/// renamed, so a crash never leaves half a key.
fn write(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
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
}

/// Writes a secret (0600) whole, making its folder (0700) first.
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    write(path, text, 0o600)
}

/// The certificate chain and key in these PEM files, checked to match.
pub(crate) fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    load(&Source {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    })
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
