//! HTTPS served by Hearth (`[server.tls]`): a self-signed certificate made once
//! and kept, certificate files reloaded while serving, and plain HTTP refused on
//! the TLS port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use hearth_config::MapEnv;
use hearth_server::Server;

/// A Hearth on a loopback port with `[server.tls]` as given; returns its port,
/// its handle for reloads, and a stop sender.
async fn start(
    data: &Path,
    tls: &str,
) -> (
    u16,
    Option<std::sync::Arc<hearth_http::Tls>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let up = hearth_testkit::FakeUpstream::start().await.unwrap();
    let toml = format!(
        "[server]\nworkers = 1\n[server.tls]\n{tls}\n[storage]\ndata_dir = {:?}\n\
         [[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"{}\"\n",
        data.display().to_string(),
        up.base_url()
    );
    let config = hearth_config::load_str(&toml, "test.toml", &MapEnv::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let server = Server::builder(config)
        .env(MapEnv::default())
        .build()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tls = server.tls().cloned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _keep = up;
        server
            .run(listener, async move {
                let _ = rx.await;
            })
            .await
    });
    (port, tls, tx)
}

/// A client that trusts only `cert_pem`.
fn pinned(cert_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_self_signed_certificate_is_made_once_and_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let (port, tls, stop) = start(
        dir.path(),
        "mode = \"self-signed\"\nnames = [\"hearth.test\"]",
    )
    .await;
    let cert_path = dir.path().join("tls/self-signed.crt");
    assert_eq!(tls.unwrap().cert_path(), cert_path);
    let cert = std::fs::read(&cert_path).unwrap();
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("tls/self-signed.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    let client = pinned(&cert);
    for host in ["127.0.0.1", "localhost"] {
        let r = client
            .get(format!("https://{host}:{port}/health"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("https://{host}: {e:?}"));
        assert_eq!(r.status(), 200);
    }
    let chat = client
        .post(format!("https://127.0.0.1:{port}/v1/chat/completions"))
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);
    assert!(chat.text().await.unwrap().ends_with("data: [DONE]\n\n"));

    // Plain HTTP on the TLS port gets no answer; an unpinned client refuses the certificate.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .is_err()
    );
    assert!(
        reqwest::get(format!("https://127.0.0.1:{port}/health"))
            .await
            .is_err()
    );
    let _ = stop.send(());

    // The next start keeps the certificate clients pinned.
    let (port, _, stop) = start(dir.path(), "mode = \"self-signed\"").await;
    assert_eq!(std::fs::read(&cert_path).unwrap(), cert);
    let r = client
        .get(format!("https://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = stop.send(());
}

fn make_cert(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), name.into()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, made.cert.pem().into_bytes())
}

#[tokio::test]
async fn certificate_files_are_read_again_on_reload_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key, a_pem) = make_cert(dir.path(), "a");
    let (b_cert, b_key, b_pem) = make_cert(dir.path(), "b");
    let live_cert = dir.path().join("live.crt");
    let live_key = dir.path().join("live.key");
    std::fs::copy(&a_cert, &live_cert).unwrap();
    std::fs::copy(&a_key, &live_key).unwrap();
    let (port, tls, stop) = start(
        &dir.path().join("data"),
        &format!(
            "mode = \"files\"\ncert = {:?}\nkey = {:?}",
            live_cert.display().to_string(),
            live_key.display().to_string()
        ),
    )
    .await;
    let tls = tls.unwrap();
    let url = format!("https://127.0.0.1:{port}/health");
    assert_eq!(pinned(&a_pem).get(&url).send().await.unwrap().status(), 200);
    assert!(pinned(&b_pem).get(&url).send().await.is_err());

    // Renewed (as certbot would): the next handshake uses the new one.
    std::fs::copy(&b_cert, &live_cert).unwrap();
    std::fs::copy(&b_key, &live_key).unwrap();
    tls.reload().unwrap();
    assert_eq!(pinned(&b_pem).get(&url).send().await.unwrap().status(), 200);
    assert!(pinned(&a_pem).get(&url).send().await.is_err());

    // A key that does not match is refused, and the good one stays in use.
    std::fs::copy(&a_key, &live_key).unwrap();
    let e = tls.reload().unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");
    assert_eq!(pinned(&b_pem).get(&url).send().await.unwrap().status(), 200);
    let _ = stop.send(());
}

#[tokio::test]
async fn a_missing_certificate_file_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = hearth_config::load_str(
        "[server.tls]\nmode = \"files\"\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n",
        "test.toml",
        &MapEnv::new([(
            "HEARTH_STORAGE_DATA_DIR",
            dir.path().display().to_string().as_str(),
        )]),
    )
    .unwrap();
    let e = Server::builder(config)
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read /nonexistent/c.pem"), "{e}");
}
