//! The upstream backend over both of its clients, against a real local HTTP server:
//! `Via::Auto` (hyper's client, for a plain `http://` upstream) and `Via::Reqwest`
//! (what `https://` upstreams and proxied setups use).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed step fails the test

use std::time::Duration;

use futures::StreamExt;
use hearth_api::ChatCompletionRequest;
use hearth_config::ModelConfig;
use hearth_router::{Backend, BackendError, Reply, Request};
use hearth_testkit::{Behaviour, FakeUpstream};
use hearth_upstream::{UpstreamBackend, Via};

const VIAS: [Via; 2] = [Via::Auto, Via::Reqwest];

fn config(base_url: String) -> ModelConfig {
    ModelConfig {
        name: "m".into(),
        base_url: Some(base_url),
        upstream_model: Some("up-model".into()),
        first_byte_timeout_secs: 1,
        idle_timeout_secs: 1,
        connect_timeout_secs: 1,
        ..ModelConfig::default()
    }
}

fn chat(stream: bool) -> Request {
    let v = serde_json::json!({
        "model": "m", "stream": stream, "tools": [],
        "messages": [{"role": "user", "content": "hi"}]
    });
    Request::Chat(ChatCompletionRequest::from_value(v).unwrap())
}

fn backend(up: &FakeUpstream, via: Via) -> UpstreamBackend {
    UpstreamBackend::with_transport(&config(up.base_url()), Some("sk-up".into()), via).unwrap()
}

#[tokio::test]
async fn answers_whole_with_usage_and_rewrites_the_model() {
    for via in VIAS {
        let up = FakeUpstream::start().await.unwrap();
        let b = backend(&up, via);
        let want = if via == Via::Auto {
            "\"direct\""
        } else {
            "\"reqwest\""
        };
        assert!(format!("{b:?}").contains(want), "{via:?}: {b:?}");
        let Reply::Full { body, usage } = b.call(chat(false)).await.unwrap() else {
            panic!("{via:?}: expected a whole answer");
        };
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "chat.completion", "{via:?}");
        assert!(usage.is_some(), "{via:?}");
        let got = &up.received()[0];
        assert_eq!(got.body["model"], "up-model", "{via:?}");
        assert_eq!(
            got.body["tools"],
            serde_json::json!([]),
            "{via:?}: passed through"
        );
        assert_eq!(
            got.authorization.as_deref(),
            Some("Bearer sk-up"),
            "{via:?}"
        );
    }
}

#[tokio::test]
async fn streams_events_until_done_and_a_dropped_stream_is_an_error() {
    for via in VIAS {
        let up = FakeUpstream::start().await.unwrap();
        let b = backend(&up, via);
        let Reply::Stream(mut s) = b.call(chat(true)).await.unwrap() else {
            panic!("{via:?}: expected a stream");
        };
        let mut n = 0;
        while let Some(c) = s.next().await {
            c.unwrap_or_else(|e| panic!("{via:?}: {e}"));
            n += 1;
        }
        assert!(n >= 4, "{via:?}: {n} chunks");

        up.push(Behaviour::DropMidStream { after: 1 });
        let Reply::Stream(mut s) = b.call(chat(true)).await.unwrap() else {
            panic!("{via:?}: expected a stream");
        };
        let mut failed = false;
        while let Some(c) = s.next().await {
            failed |= c.is_err();
        }
        assert!(
            failed,
            "{via:?}: a stream cut before [DONE] ends in an error"
        );
    }
}

#[tokio::test]
async fn error_statuses_stalls_and_refused_connections() {
    for via in VIAS {
        let up = FakeUpstream::start().await.unwrap();
        let b = backend(&up, via);
        up.push(Behaviour::Status {
            status: 503,
            retry_after: Some(2),
        });
        match b.call(chat(false)).await {
            Err(BackendError::Status {
                status: 503,
                retry_after,
                ..
            }) => assert_eq!(retry_after, Some(Duration::from_secs(2)), "{via:?}"),
            other => panic!("{via:?}: {other:?}"),
        }
        up.push(Behaviour::Stall);
        assert!(
            matches!(b.call(chat(false)).await, Err(BackendError::Timeout(_))),
            "{via:?}: a stalled upstream times out"
        );
        assert!(b.probe().await.is_ok(), "{via:?}: probe");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", closed.local_addr().unwrap());
        drop(closed);
        let b = UpstreamBackend::with_transport(&config(url), None, via).unwrap();
        assert!(
            matches!(b.call(chat(false)).await, Err(BackendError::Connect(_))),
            "{via:?}: nothing listening is a connect error"
        );
    }
}
