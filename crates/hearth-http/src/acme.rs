//! Certificates from an ACME CA (`[server.tls] mode = "acme"`; Let's Encrypt by
//! default), proved with TLS-ALPN-01 on Hearth's own listener, and renewed.
//!
//! The CA connects to port 443 of each domain asking for the `acme-tls/1`
//! protocol; the listener's certificate resolver ([`crate::tls`]) answers such a
//! handshake with the challenge certificate made here, and every other one with
//! the certificate in use. So no other port, web server or certbot is needed.
//! Until the first certificate is issued Hearth serves a temporary self-signed one
//! (`/health` answers); an issued one is swapped in without a restart.
//!
//! Everything is kept under `data_dir/tls/acme/<directory host>/`: the account's
//! key (`account.json`) and the certificate and its key, all 0600. A restart
//! reuses them, so Hearth orders only when a certificate is missing, is for other
//! names, or is due ([`renewal`]: a third of its lifetime or 30 days before it
//! expires, whichever is sooner to expiry), never at every start: the CA's rate
//! limits are never at stake. A background task checks every 12 h; a failed
//! order is retried with a growing delay ([`backoff`]), logged once per attempt
//! with what to check, and shown by [`AcmeStatus::line`] (the login banner).

use hearth_api::civil_from_days;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use hearth_config::TlsConfig;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;

use crate::tls::{Resolver, TlsError};

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// How often the background task looks at the certificate when nothing is due.
const CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);
/// Renew at the latest this long before expiry.
const RENEW_BEFORE_AT_MOST: Duration = Duration::from_secs(30 * 24 * 3600);
/// The least time between two issued certificates' orders by the task.
const MIN_BETWEEN_ORDERS: Duration = Duration::from_secs(3600);
/// How long the CA gets to validate and issue before an attempt counts as failed.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why an ACME order failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME ({url}): {source}")]
    Protocol {
        url: String,
        source: instant_acme::Error,
    },
    #[error("the CA refused the domain check for {domain}: {problem}")]
    Challenge { domain: String, problem: String },
    #[error("the CA offers no TLS-ALPN-01 challenge for {0}")]
    NoTlsAlpn(String),
    #[error("the order ended as {0:?}")]
    Order(String),
    #[error("cannot make the certificate's key or request: {0}")]
    Key(String),
    #[error("cannot store the certificate in {dir}: {source}")]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA's certificate cannot be served: {0}")]
    Certificate(#[from] TlsError),
}

const REACH: &str = "the CA could not reach this host for the domain check: the domain's DNS \
    record must point at this machine, and port 443 must be open to the internet (firewall, \
    cloud security group) and reach Hearth; SIGHUP (`systemctl kill -s HUP hearth`) retries \
    at once";

impl AcmeError {
    /// What the operator should check, for the log line and the banner.
    pub fn hint(&self) -> &'static str {
        let problem = match self {
            AcmeError::Protocol {
                source: instant_acme::Error::Api(p),
                ..
            } => p.r#type.as_deref(),
            _ => None,
        };
        match problem.and_then(|t| t.strip_prefix("urn:ietf:params:acme:error:")) {
            Some("rateLimited") => {
                "the CA's rate limit was hit: Hearth retries later on its own; try a set-up \
                 against the staging directory (directory_url) first"
            }
            Some("caa") => "a CAA record in the domain's DNS does not allow this CA to issue",
            Some("rejectedIdentifier") => {
                "the CA does not issue for this name (server.tls.domains)"
            }
            Some("connection" | "dns" | "tls" | "unauthorized" | "incorrectResponse") => REACH,
            _ => match self {
                AcmeError::Challenge { .. } => REACH,
                AcmeError::Protocol { .. } => {
                    "the ACME directory could not be used: check outbound HTTPS to it and \
                     [server.tls] directory_url"
                }
                AcmeError::Write { .. } => "check that Hearth may write under storage.data_dir",
                _ => "Hearth retries on its own",
            },
        }
    }
}

/// A certificate's validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// What to do about a certificate now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Order a new one now.
    Due,
    /// Look again after this long (at most [`CHECK_EVERY`]).
    CheckIn(Duration),
}

/// When a certificate valid over `validity` is renewed: once less than a third of
/// its lifetime, or 30 days, whichever is less, is left.
pub fn renew_at(validity: Validity) -> SystemTime {
    let lifetime = validity
        .not_after
        .duration_since(validity.not_before)
        .unwrap_or_default();
    validity.not_after - (lifetime / 3).min(RENEW_BEFORE_AT_MOST)
}

/// Whether a certificate valid over `validity` is due for renewal at `now`.
pub fn renewal(validity: Validity, now: SystemTime) -> Renewal {
    match renew_at(validity).duration_since(now) {
        Ok(left) if !left.is_zero() => Renewal::CheckIn(left.min(CHECK_EVERY)),
        _ => Renewal::Due,
    }
}

/// The wait before retrying after `failures` failed attempts in a row: 5 minutes,
/// doubling up to 6 hours, so a host that cannot be reached stays under Let's
/// Encrypt's limit of 5 failed validations per name per hour.
pub fn backoff(failures: u32) -> Duration {
    let minutes = 5u64 << failures.saturating_sub(1).min(7);
    Duration::from_secs(minutes * 60).min(Duration::from_secs(6 * 3600))
}

/// The `notBefore` and `notAfter` of a DER certificate.
pub fn validity(der: &[u8]) -> Option<Validity> {
    fn time(r: yasna::BERReader<'_, '_>) -> yasna::ASN1Result<SystemTime> {
        use yasna::tags::{TAG_GENERALIZEDTIME, TAG_UTCTIME};
        let tag = r.lookahead_tag()?;
        if tag == TAG_UTCTIME {
            Ok((*r.read_utctime()?.datetime()).into())
        } else if tag == TAG_GENERALIZEDTIME {
            Ok((*r.read_generalized_time()?.datetime()).into())
        } else {
            Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid))
        }
    }
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serial, signature,
    //   issuer, validity SEQUENCE { notBefore, notAfter }, ... }
    yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let v = r.next().read_sequence(|r| {
                r.read_optional(|r| r.read_der())?;
                r.next().read_der()?;
                r.next().read_der()?;
                r.next().read_der()?;
                let v = r.next().read_sequence(|r| {
                    Ok(Validity {
                        not_before: time(r.next())?,
                        not_after: time(r.next())?,
                    })
                })?;
                while r.read_optional(|r| r.read_der())?.is_some() {}
                Ok(v)
            })?;
            r.next().read_der()?;
            r.next().read_der()?;
            Ok(v)
        })
    })
    .ok()
}

/// Where ACME stands, for the status file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcmeStatus {
    pub domains: Vec<String>,
    /// The issued certificate served now, if any.
    pub validity: Option<Validity>,
    /// Orders attempted by this process (a restart with a stored certificate
    /// attempts none).
    pub orders: u32,
    /// The last attempt's error and what to check, while it is not resolved.
    pub failing: Option<(String, &'static str)>,
    /// When the next attempt is made, after a failure.
    pub retry_at: Option<SystemTime>,
}

impl AcmeStatus {
    /// One line for a person logging in.
    pub fn line(&self) -> String {
        let names = self.domains.join(", ");
        let mut line = match self.validity {
            Some(v) => format!(
                "certificate for {names} valid until {}",
                httpdate(v.not_after)
            ),
            None => format!(
                "no certificate for {names} yet: serving a temporary self-signed one meanwhile"
            ),
        };
        if let Some((error, hint)) = &self.failing {
            line.push_str(&format!("; last attempt failed: {error} (next: {hint})"));
            if let Some(at) = self.retry_at {
                line.push_str(&format!("; retrying at {}", httpdate(at)));
            }
        }
        line
    }
}

fn httpdate(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs % 86_400 / 3600,
        secs % 3600 / 60
    )
}

/// The ACME side of a [`crate::Tls`]: its settings, its files, and its state.
pub(crate) struct Acme {
    domains: Vec<String>,
    email: Option<String>,
    directory_url: String,
    directory_ca: Option<PathBuf>,
    dir: PathBuf,
    /// The certificate's file and its key's: named after the domains, so that
    /// other names make another order.
    cert: PathBuf,
    key: PathBuf,
    /// Where Hearth's listener accepts, as reached from this host.
    listen: Option<std::net::SocketAddr>,
    resolver: Arc<Resolver>,
    status: Mutex<AcmeStatus>,
    /// One order at a time (the task's and [`Acme::order`] from a caller).
    ordering: tokio::sync::Mutex<Option<Account>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Acme {
    pub(crate) fn new(
        config: &TlsConfig,
        data_dir: &Path,
        listen: &str,
        resolver: Arc<Resolver>,
    ) -> Result<Acme, TlsError> {
        if config.domains.is_empty() {
            return Err(TlsError::Setup(
                "mode = \"acme\" needs `domains` (the DNS names to get a certificate for)".into(),
            ));
        }
        let url = config.directory_url().to_owned();
        let dir = data_dir
            .join("tls")
            .join("acme")
            .join(directory_folder(&url));
        let name = file_safe(&config.domains.join("+"));
        Ok(Acme {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            domains: config.domains.clone(),
            email: config.email.clone(),
            directory_url: url,
            directory_ca: config.directory_ca.clone(),
            dir,
            listen: listen.parse::<std::net::SocketAddr>().ok().map(|mut a| {
                if a.ip().is_unspecified() {
                    a.set_ip(match a {
                        std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                a
            }),
            resolver,
            status: Mutex::new(AcmeStatus {
                domains: config.domains.clone(),
                ..AcmeStatus::default()
            }),
            ordering: tokio::sync::Mutex::new(None),
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The certificate's file (it exists once one was issued).
    pub(crate) fn cert_path(&self) -> &Path {
        &self.cert
    }

    pub(crate) fn status(&self) -> AcmeStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_status(&self, f: impl FnOnce(&mut AcmeStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The stored certificate, when there is one for these names: served from now on.
    pub(crate) fn load_stored(&self) -> Result<bool, TlsError> {
        if !self.cert.exists() || !self.key.exists() {
            return Ok(false);
        }
        let certified = crate::tls::load_pair(&self.cert, &self.key)?;
        self.install(certified);
        Ok(true)
    }

    fn install(&self, certified: CertifiedKey) {
        let validity = certified.end_entity_cert().ok().and_then(|c| validity(c));
        self.resolver.set_current(Arc::new(certified));
        self.set_status(|s| s.validity = validity);
    }

    /// Starts the task that orders and renews, on the current tokio runtime. It
    /// stops once `acme` is dropped.
    pub(crate) fn spawn(acme: &Arc<Acme>) -> Result<(), TlsError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            TlsError::Setup("mode = \"acme\" must be set up inside a tokio runtime".into())
        })?;
        handle.spawn(keep_renewed(Arc::downgrade(acme)));
        Ok(())
    }

    /// Makes the task look at the certificate again now (after a reload).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Orders a certificate now and serves it: what the task does when one is due.
    pub(crate) async fn order(&self) -> Result<(), AcmeError> {
        let mut account = self.ordering.lock().await;
        self.set_status(|s| s.orders += 1);
        let result = self.order_with(&mut account).await;
        // A challenge certificate is never served after its order.
        self.resolver.clear_challenges();
        match &result {
            Ok(()) => self.set_status(|s| {
                s.failing = None;
                s.retry_at = None;
            }),
            Err(e) => self.set_status(|s| s.failing = Some((e.to_string(), e.hint()))),
        }
        result
    }

    /// Waits (up to a minute) until Hearth's listener accepts: the task starts
    /// while the server is still being built, and a check the CA makes before
    /// the listener is up would count as a failed validation.
    async fn wait_listening(&self) {
        let Some(addr) = self.listen else { return };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                tracing::warn!(listen = %addr, "the listener does not accept yet; ordering anyway");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn order_with(&self, account: &mut Option<Account>) -> Result<(), AcmeError> {
        let protocol = |source| AcmeError::Protocol {
            url: self.directory_url.clone(),
            source,
        };
        self.wait_listening().await;
        let account = match account {
            Some(a) => a.clone(),
            None => account.insert(self.account().await?).clone(),
        };
        let identifiers: Vec<Identifier> = self
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        tracing::info!(domains = %self.domains.join(", "), directory = %self.directory_url, "ordering a TLS certificate (ACME)");
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(protocol)?;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(protocol)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(AcmeError::Order(format!("authorization {other:?}"))),
            }
            let domain = authz.identifier().to_string();
            let mut challenge = authz
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or_else(|| AcmeError::NoTlsAlpn(domain.clone()))?;
            let cert = challenge_cert(&domain, challenge.key_authorization().digest().as_ref())?;
            self.resolver.add_challenge(&domain, Arc::new(cert));
            challenge.set_ready().await.map_err(protocol)?;
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(ORDER_TIMEOUT);
        let status = order.poll_ready(&retry).await.map_err(protocol)?;
        if status != OrderStatus::Ready {
            // Say which name failed and why, as the CA put it.
            let mut authorizations = order.authorizations();
            while let Some(Ok(mut authz)) = authorizations.next().await {
                let domain = authz.identifier().to_string();
                if let Ok(state) = authz.refresh().await
                    && let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref())
                {
                    return Err(AcmeError::Challenge {
                        domain,
                        problem: problem.to_string(),
                    });
                }
            }
            return Err(AcmeError::Order(format!("{status:?}")));
        }
        let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Key(e.to_string()))?;
        let csr = rcgen::CertificateParams::new(self.domains.clone())
            .and_then(|p| p.serialize_request(&key))
            .map_err(|e| AcmeError::Key(e.to_string()))?;
        order.finalize_csr(csr.der()).await.map_err(protocol)?;
        let chain = order.poll_certificate(&retry).await.map_err(protocol)?;
        let (cert, key_file) = (&self.cert, &self.key);
        let write_err = |source| AcmeError::Write {
            dir: self.dir.clone(),
            source,
        };
        // The key first: a certificate on disk always has its key beside it.
        crate::tls::write_private(key_file, &key.serialize_pem()).map_err(write_err)?;
        crate::tls::write_private(cert, &chain).map_err(write_err)?;
        self.install(crate::tls::load_pair(cert, key_file)?);
        let until = self.status().validity.map(|v| httpdate(v.not_after));
        tracing::info!(cert = %cert.display(), valid_until = until.as_deref().unwrap_or("?"), "TLS certificate issued (ACME); serving it from the next handshake");
        Ok(())
    }

    /// The ACME account: the stored one, or a new one registered and stored now.
    async fn account(&self) -> Result<Account, AcmeError> {
        let protocol = |source| AcmeError::Protocol {
            url: self.directory_url.clone(),
            source,
        };
        let path = self.dir.join("account.json");
        if let Ok(text) = std::fs::read(&path)
            && let Ok(credentials) = serde_json::from_slice::<AccountCredentials>(&text)
        {
            return Account::builder_with_http(self.http()?)
                .from_credentials(credentials)
                .await
                .map_err(protocol);
        }
        let contact = self.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(self.http()?)
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.directory_url.clone(),
                None,
            )
            .await
            .map_err(protocol)?;
        let json = serde_json::to_string(&credentials).map_err(|e| protocol(e.into()))?;
        crate::tls::write_private(&path, &json).map_err(|source| AcmeError::Write {
            dir: self.dir.clone(),
            source,
        })?;
        tracing::info!(directory = %self.directory_url, account = %path.display(), "registered an ACME account");
        Ok(account)
    }

    fn http(&self) -> Result<Box<dyn HttpClient>, AcmeError> {
        let protocol = |e: String| AcmeError::Protocol {
            url: self.directory_url.clone(),
            source: instant_acme::Error::Other(e.into()),
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30));
        if let Some(ca) = &self.directory_ca {
            let pem = std::fs::read(ca)
                .map_err(|e| protocol(format!("directory_ca {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| protocol(format!("directory_ca {}: {e}", ca.display())))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(|e| protocol(e.to_string()))?;
        Ok(Box::new(Http(client)))
    }
}

/// The folder for one directory's account and certificates: its host and port.
fn directory_folder(url: &str) -> String {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default();
    file_safe(host)
}

/// `name` with anything but letters, digits, `.`, `-` and `+` as `_`: no `/`
/// can take a file out of its folder (the config's checks already allow only
/// DNS names; an embedder's config is not checked).
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The TLS-ALPN-01 certificate for `domain` (RFC 8737): self-signed, with the key
/// authorization's digest in a critical acmeIdentifier extension.
fn challenge_cert(domain: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let key_err = |e: rcgen::Error| AcmeError::Key(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(key_err)?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let key = rcgen::KeyPair::generate().map_err(key_err)?;
    let cert = params.self_signed(&key).map_err(key_err)?;
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

/// Orders when due, then sleeps until the next check; retries failures with
/// [`backoff`]. Ends when the [`Acme`] is dropped.
async fn keep_renewed(acme: Weak<Acme>) {
    let mut failures = 0u32;
    // No new order this soon after an issued one, whatever the certificate says
    // (a validity that cannot be read, or a lifetime shorter than the renewal
    // margin, must not turn into an order loop against the CA's limits).
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let Some(strong) = acme.upgrade() else { return };
        let due = match strong.status().validity {
            Some(v) => renewal(v, SystemTime::now()),
            None => Renewal::Due,
        };
        let now = tokio::time::Instant::now();
        let wait = match (due, quiet_until) {
            (Renewal::CheckIn(d), _) => d,
            (Renewal::Due, Some(until)) if until > now => until - now,
            (Renewal::Due, _) => match strong.order().await {
                Ok(()) => {
                    failures = 0;
                    quiet_until = Some(tokio::time::Instant::now() + MIN_BETWEEN_ORDERS);
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(failures);
                    let retry_at = SystemTime::now() + wait;
                    strong.set_status(|s| s.retry_at = Some(retry_at));
                    tracing::error!(
                        error = %e,
                        next = e.hint(),
                        retry_in_secs = wait.as_secs(),
                        attempt = failures,
                        "TLS certificate not issued (ACME); {}",
                        if strong.status().validity.is_some() {
                            "still serving the current one"
                        } else {
                            "serving a temporary self-signed one meanwhile"
                        }
                    );
                    wait
                }
            },
        };
        // Only a weak reference while asleep, so a dropped Tls ends the task.
        let wake = strong.wake.clone();
        drop(strong);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

/// instant-acme's HTTP client, over reqwest (already in the tree for upstream
/// backends): its rustls with the public roots, and `directory_ca` added.
struct Http(reqwest::Client);

impl HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<bytes::Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>,
    > {
        let client = self.0.clone();
        Box::pin(async move {
            use http_body_util::BodyExt;
            let other = |e: reqwest::Error| instant_acme::Error::Other(Box::new(e));
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let resp = client
                .request(method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(other)?;
            let mut builder = http::Response::builder().status(resp.status().as_u16());
            for (k, v) in resp.headers() {
                builder = builder.header(k, v);
            }
            let bytes = resp.bytes().await.map_err(other)?;
            let resp = builder
                .body(http_body_util::Full::new(bytes))
                .map_err(instant_acme::Error::Http)?;
            Ok(BytesResponse::from(resp))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn valid(from: SystemTime, days: u64) -> Validity {
        Validity {
            not_before: from,
            not_after: from + DAY * days as u32,
        }
    }

    #[test]
    fn a_90_day_certificate_is_renewed_30_days_before_it_expires() {
        let t0 = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let v = valid(t0, 90);
        assert_eq!(renew_at(v), t0 + DAY * 60);
        assert_eq!(renewal(v, t0), Renewal::CheckIn(CHECK_EVERY));
        assert_eq!(
            renewal(v, t0 + DAY * 60 - Duration::from_secs(60)),
            Renewal::CheckIn(Duration::from_secs(60))
        );
        assert_eq!(renewal(v, t0 + DAY * 60), Renewal::Due);
        assert_eq!(renewal(v, t0 + DAY * 89), Renewal::Due);
        // Expired (a host that was off for months): due at once.
        assert_eq!(renewal(v, t0 + DAY * 200), Renewal::Due);
    }

    #[test]
    fn short_and_long_lived_certificates() {
        let t0 = SystemTime::UNIX_EPOCH + DAY * 20_000;
        // Six days (Let's Encrypt's short-lived profile): two days before.
        assert_eq!(renew_at(valid(t0, 6)), t0 + DAY * 4);
        // Five years (pebble's): 30 days before.
        assert_eq!(renew_at(valid(t0, 5 * 365)), t0 + DAY * (5 * 365 - 30));
        // Nonsense (ends before it starts): due.
        let broken = Validity {
            not_before: t0,
            not_after: t0 - DAY,
        };
        assert_eq!(renewal(broken, t0), Renewal::Due);
    }

    #[test]
    fn failures_back_off_from_five_minutes_to_six_hours() {
        let mins: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs() / 60).collect();
        assert_eq!(mins, [5, 10, 20, 40, 80, 160, 320, 360, 360, 360]);
        // At most four attempts in the first hour.
        let first_hour = (1..).scan(0, |t, n| {
            *t += backoff(n).as_secs();
            Some(*t)
        });
        assert_eq!(first_hour.take_while(|t| *t < 3600).count(), 3);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(6 * 3600));
    }

    #[test]
    fn reads_the_validity_of_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["a.example.com".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 2);
        params.not_after = rcgen::date_time_ymd(2060, 3, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let v = validity(cert.der()).unwrap();
        assert_eq!(httpdate(v.not_before), "2030-01-02 00:00 UTC");
        assert_eq!(httpdate(v.not_after), "2060-03-04 00:00 UTC");
        assert_eq!(validity(b"not a certificate"), None);
    }

    #[test]
    fn directory_folders_are_plain_names() {
        assert_eq!(
            directory_folder(hearth_config::LETS_ENCRYPT),
            "acme-v02.api.letsencrypt.org"
        );
        assert_eq!(
            directory_folder("https://127.0.0.1:14000/dir"),
            "127.0.0.1_14000"
        );
    }

    #[test]
    fn the_status_line_says_what_to_do() {
        let t0 = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let mut s = AcmeStatus {
            domains: vec!["gpu.example.com".into()],
            ..AcmeStatus::default()
        };
        assert!(
            s.line()
                .starts_with("no certificate for gpu.example.com yet")
        );
        s.failing = Some((
            "the CA refused".into(),
            AcmeError::Challenge {
                domain: "gpu.example.com".into(),
                problem: "x".into(),
            }
            .hint(),
        ));
        s.retry_at = Some(t0);
        assert!(s.line().contains("port 443 must be open"), "{}", s.line());
        assert!(
            s.line().ends_with("retrying at 2024-10-04 00:00 UTC"),
            "{}",
            s.line()
        );
        s.validity = Some(valid(t0, 90));
        s.failing = None;
        assert_eq!(
            s.line(),
            "certificate for gpu.example.com valid until 2025-01-02 00:00 UTC"
        );
    }
}
