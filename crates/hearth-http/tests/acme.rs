//! `[server.tls] mode = "acme"` against a real ACME CA: pebble, Let's Encrypt's
//! test server (Debian's `pebble`, with its `pebble-challtestsrv` as the DNS
//! server that points every name at 127.0.0.1). Pebble validates for real: it
//! connects to Hearth's listener with TLS-ALPN-01 and checks the challenge
//! certificate. Without pebble the pebble tests skip; with
//! `HEARTH_TEST_PEBBLE_REQUIRED=1` (`make unit`) they fail instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // helpers fail the test loudly; a skip says so

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_config::{HealthConfig, TlsConfig, TlsMode};
use hearth_gateway::{Gateway, KeyRing, LocalLimiter};
use hearth_http::{App, HttpState, Tls};
use hearth_router::Router;
use tokio::net::TcpListener;

const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";
const DOMAINS: [&str; 2] = ["hearth.test", "www.hearth.test"];

/// Whether pebble is here; if not, the test skips, or fails when required.
fn have_pebble() -> bool {
    if Path::new(PEBBLE).exists() && Path::new(CHALLTESTSRV).exists() {
        return true;
    }
    let how = "install it with `apt-get install pebble` (make apt-test)";
    if std::env::var("HEARTH_TEST_PEBBLE_REQUIRED").as_deref() == Ok("1") {
        panic!("{PEBBLE} is required (HEARTH_TEST_PEBBLE_REQUIRED=1) but not installed: {how}");
    }
    eprintln!("skipped: {PEBBLE} is not installed ({how})");
    false
}

/// A child process killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pebble and its DNS server on free loopback ports, validating TLS-ALPN-01 on
/// `tls_port`.
struct Pebble {
    _dir: tempfile::TempDir,
    _peers: Vec<Peer>,
    directory_url: String,
    management: u16,
    /// The certificate of pebble's own HTTPS (directory and management).
    own_ca: PathBuf,
}

impl Pebble {
    async fn start(tls_port: u16) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let own_ca = dir.path().join("pebble.crt");
        std::fs::write(&own_ca, made.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("pebble.key"),
            made.signing_key.serialize_pem(),
        )
        .unwrap();
        let (dns, chall_mgmt, listen, management, http) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.path().join(name)).unwrap());
        let challtestsrv = Command::new(CHALLTESTSRV)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .unwrap();
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("pebble.crt"),
            "privateKey": dir.path().join("pebble.key"),
            "httpPort": http,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let pebble = Command::new(PEBBLE)
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // Validation stays real; only its random 0-15 s pause goes.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap();
        let pebble = Pebble {
            _peers: vec![Peer(challtestsrv), Peer(pebble)],
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            management,
            own_ca,
            _dir: dir,
        };
        let client = pebble.client();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(&pebble.directory_url).send().await.is_err() {
            assert!(Instant::now() < deadline, "pebble did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pebble
    }

    /// What pebble logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("pebble.log")).unwrap_or_default()
            + &std::fs::read_to_string(self._dir.path().join("pebble.err")).unwrap_or_default()
    }

    /// A client that trusts pebble's own HTTPS.
    fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.own_ca).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap()
    }

    /// The root that pebble issues under (made anew at each pebble start).
    async fn issuing_root(&self) -> reqwest::Certificate {
        let pem = self
            .client()
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap();
        reqwest::Certificate::from_pem(&pem).unwrap()
    }
}

fn acme_config(directory_url: &str, directory_ca: Option<&Path>) -> TlsConfig {
    TlsConfig {
        mode: TlsMode::Acme,
        domains: DOMAINS.iter().map(|d| (*d).to_owned()).collect(),
        email: Some("admin@hearth.test".into()),
        directory_url: Some(directory_url.to_owned()),
        directory_ca: directory_ca.map(Path::to_path_buf),
        ..TlsConfig::default()
    }
}

/// Serves `/health` with `tls` on `listener` until the returned sender is dropped.
fn serve(listener: TcpListener, tls: Arc<Tls>) -> tokio::sync::oneshot::Sender<()> {
    let router = Arc::new(Router::new(Vec::new(), None, HealthConfig::default()));
    let gateway = Arc::new(Gateway::new(
        router,
        Arc::new(LocalLimiter::new()),
        KeyRing::new(&[], 0, 0),
    ));
    let app = App::builder(HttpState::new(Arc::default(), gateway)).build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hearth_http::serve(
        listener,
        app,
        Some(tls),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    stop
}

/// Waits until `tls` serves an issued certificate; fails with ACME's own words.
async fn wait_issued(tls: &Tls) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = tls.acme_status().unwrap();
        if status.validity.is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate after 90 s: {}",
            status.line()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GET /health as `domain` (resolved to `addr`), verified against `root` only;
/// returns the certificate the server presented.
async fn get_health(addr: SocketAddr, domain: &str, root: &reqwest::Certificate) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root.clone())
        .resolve(domain, addr)
        .tls_info(true)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://{domain}:{}/health", addr.port()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("https://{domain}: {e:?}"));
    assert_eq!(resp.status(), 200);
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

fn pem_leaf(path: &Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_from_pebble_reuses_it_at_restart_and_renews_on_demand() {
    if !have_pebble() {
        return;
    }
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let pebble = Pebble::start(addr.port()).await;
    let data = tempfile::tempdir().unwrap();
    let config = acme_config(&pebble.directory_url, Some(&pebble.own_ca));

    // First start: no certificate, so one is ordered and validated on this
    // listener, once it accepts (as in the server, it is bound after the set-up).
    let tls = Tls::from_config(&config, data.path(), &addr.to_string())
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let stop = serve(listener, tls.clone());
    wait_issued(&tls).await;
    assert!(
        pebble.log().contains("set VALID by completed challenge"),
        "{}",
        pebble.log()
    );
    let root = pebble.issuing_root().await;
    let cert = tls.cert_path().to_path_buf();
    for domain in DOMAINS {
        assert_eq!(get_health(addr, domain, &root).await, pem_leaf(&cert));
    }
    let status = tls.acme_status().unwrap();
    assert_eq!(status.orders, 1);
    assert_eq!(status.failing, None);
    assert!(
        status
            .line()
            .starts_with("certificate for hearth.test, www.hearth.test valid until")
    );
    // Keys and the certificate are the operator's alone.
    let dir = cert.parent().unwrap();
    for f in [
        "account.json",
        "hearth.test+www.hearth.test.key",
        "hearth.test+www.hearth.test.crt",
    ] {
        assert_eq!(mode_of(&dir.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode_of(dir), 0o700);

    // A restart serves the stored certificate and orders nothing.
    drop(stop);
    drop(tls);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let tls = Tls::from_config(&config, data.path(), &addr.to_string())
        .unwrap()
        .unwrap();
    let _stop = serve(listener, tls.clone());
    assert!(tls.acme_status().unwrap().validity.is_some());
    let first = pem_leaf(&cert);
    assert_eq!(get_health(addr, "hearth.test", &root).await, first);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        tls.acme_status().unwrap().orders,
        0,
        "a restart must not order"
    );

    // A renewal (forced here; due ones go the same way) swaps the certificate in
    // without a restart, with the stored account.
    tls.renew_now().await.unwrap();
    let renewed = pem_leaf(&cert);
    assert_ne!(renewed, first);
    assert_eq!(get_health(addr, "www.hearth.test", &root).await, renewed);
    assert_eq!(tls.acme_status().unwrap().orders, 1);
}

#[tokio::test]
async fn serves_a_temporary_certificate_and_says_why_while_the_ca_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let data = tempfile::tempdir().unwrap();
    // Nothing listens there.
    let config = acme_config(&format!("https://127.0.0.1:{}/dir", free_port()), None);
    let tls = Tls::from_config(&config, data.path(), &addr.to_string())
        .unwrap()
        .unwrap();
    let _stop = serve(listener, tls.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = tls.acme_status().unwrap();
        if status.failing.is_some() && status.retry_at.is_some() {
            break status;
        }
        assert!(Instant::now() < deadline, "no failure reported: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.validity, None);
    let line = status.line();
    assert!(
        line.contains("serving a temporary self-signed one"),
        "{line}"
    );
    assert!(line.contains("check outbound HTTPS"), "{line}");
    assert!(line.contains("retrying at"), "{line}");
    // /health answers meanwhile, with the stand-in made for the domains too.
    let stand_in = std::fs::read(data.path().join("tls/self-signed.crt")).unwrap();
    let root = reqwest::Certificate::from_pem(&stand_in).unwrap();
    let served = get_health(addr, "hearth.test", &root).await;
    assert_eq!(served, pem_leaf(&data.path().join("tls/self-signed.crt")));
    assert!(!tls.cert_path().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_domain_check_is_reported_with_what_to_check() {
    if !have_pebble() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Pebble checks a port where nothing answers: as if port 443 were closed.
    let pebble = Pebble::start(free_port()).await;
    let data = tempfile::tempdir().unwrap();
    let config = acme_config(&pebble.directory_url, Some(&pebble.own_ca));
    let tls = Tls::from_config(&config, data.path(), &addr.to_string())
        .unwrap()
        .unwrap();
    let _stop = serve(listener, tls.clone());
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let status = tls.acme_status().unwrap();
        if status.failing.is_some() {
            break status;
        }
        assert!(Instant::now() < deadline, "no failure reported: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let line = status.line();
    assert!(line.contains("Failed to connect to 127.0.0.1:"), "{line}");
    assert!(line.contains("tls-alpn-01 challenge"), "{line}");
    assert!(line.contains("port 443 must be open"), "{line}");
    assert_eq!(status.validity, None);
}

#[tokio::test]
async fn an_acme_tls_handshake_gets_no_certificate_when_no_order_is_pending() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = acme_config(&format!("https://127.0.0.1:{}/dir", free_port()), None);
    let tls = Tls::from_config(&config, data.path(), &addr.to_string())
        .unwrap()
        .unwrap();
    let _stop = serve(listener, tls.clone());
    // A client asking for `acme-tls/1` alone, as a CA does: with no challenge for
    // the name, the server has no certificate to show (not even the stand-in).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    client.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("hearth.test").unwrap();
    let err = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap_err();
    // The server refused (an alert), rather than sending a certificate the
    // client then distrusted.
    let text = err.to_string();
    assert!(text.contains("received fatal alert"), "{text}");
}
