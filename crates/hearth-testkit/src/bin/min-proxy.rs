//! `min-proxy PORT UPSTREAM_URL`: the least a proxy built on Hearth's own libraries
//! (axum, hyper's pooled client, tokio, run as `hearth serve` runs them) can do:
//! forward each POST body to one plain-`http://` upstream URL and return the answer,
//! with no parsing, auth, limits, logs or metrics. `bench/gateway` runs it beside
//! Hearth to tell the libraries' cost from Hearth's own.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
}

async fn forward(State(up): State<Upstream>, body: Bytes) -> Response {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = axum::http::Method::POST;
    *req.uri_mut() = up.uri.clone();
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let resp = match up.client.request(req).await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Body::new(body));
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        out.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(url)) = (args.next(), args.next()) else {
        return Err("usage: min-proxy PORT UPSTREAM_URL".into());
    };
    let uri: Uri = url.parse()?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?))?;
    listener.set_nonblocking(true)?;
    // As `hearth serve` runs: one single-threaded event loop per core, each accepting
    // from the same socket with its own upstream pool.
    let loops = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = (0..loops)
        .map(|_| {
            let listener = listener.try_clone()?;
            let uri = uri.clone();
            Ok(std::thread::spawn(move || -> std::io::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let mut connector = HttpConnector::new();
                    connector.set_nodelay(true);
                    let client = Client::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(256)
                        .build(connector);
                    let app = Router::new()
                        .route("/v1/chat/completions", post(forward))
                        .with_state(Upstream { client, uri });
                    axum::serve(tokio::net::TcpListener::from_std(listener)?, app).await
                })
            }))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for t in threads {
        t.join().map_err(|_| "an event loop panicked")??;
    }
    Ok(())
}
