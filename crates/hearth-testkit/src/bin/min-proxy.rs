//! `min-proxy PORT UPSTREAM_URL`: the least a proxy built on Hearth's own libraries
//! (axum, reqwest, tokio, run as `hearth serve` runs them) can do: forward each POST body to
//! one upstream URL and return the answer, with no parsing, auth, limits, logs or
//! metrics. `bench/gateway` runs it beside Hearth to tell the libraries' cost from
//! Hearth's own.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: reqwest::Url,
}

async fn forward(State(up): State<Upstream>, body: Bytes) -> Response {
    let sent = up
        .client
        .post(up.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
    let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
    if let Some(ct) = ct {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(url)) = (args.next(), args.next()) else {
        return Err("usage: min-proxy PORT UPSTREAM_URL".into());
    };
    let url: reqwest::Url = url.parse()?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?))?;
    listener.set_nonblocking(true)?;
    // As `hearth serve` runs: one single-threaded event loop per core, each accepting
    // from the same socket with its own upstream pool.
    let loops = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = (0..loops)
        .map(|_| {
            let listener = listener.try_clone()?;
            let url = url.clone();
            Ok(std::thread::spawn(move || -> std::io::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let up = Upstream {
                        client: reqwest::Client::builder()
                            .tcp_nodelay(true)
                            .pool_max_idle_per_host(256)
                            .build()
                            .map_err(std::io::Error::other)?,
                        url,
                    };
                    let app = Router::new()
                        .route("/v1/chat/completions", post(forward))
                        .with_state(up);
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
