//! A model's `[models.defaults]` and `tools` policy, as the upstream receives the
//! request and as the client is told: the shape Open WebUI sends (tools on every
//! turn, no `max_tokens`).

use serde_json::json;

use crate::harness::*;
use hearth_testkit::FakeUpstream;

fn open_webui_body(model: &str) -> serde_json::Value {
    json!({
        "model": model,
        "stream": false,
        "messages": [{"role": "user", "content": "Say hi"}],
        "tools": [{"type": "function", "function": {"name": "web_search", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
    })
}

#[tokio::test]
async fn defaults_fill_what_the_request_leaves_out_and_tools_follow_the_policy() {
    let up = FakeUpstream::start().await.unwrap();
    let base = up.base_url();
    let gw = Gateway::start(&format!(
        "{}{}{}",
        upstream_model(
            "quiet",
            &base,
            "tools = \"ignore\"\n[models.defaults]\nmax_tokens = 64\ntemperature = 0.3"
        ),
        upstream_model("strict", &base, "tools = \"reject\""),
        upstream_model("agent", &base, ""),
    ))
    .await;

    // `ignore`: served without the tools, with the defaults, and the client is told.
    let resp = gw
        .post("/v1/chat/completions")
        .json(&open_webui_body("quiet"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let warning = resp.headers()["x-hearth-warning"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        warning.contains("tools ignored") && warning.contains("`quiet`"),
        "{warning}"
    );
    let sent = &up.received()[0].body;
    assert!(
        sent.get("tools").is_none() && sent.get("tool_choice").is_none(),
        "{sent}"
    );
    assert_eq!(sent["max_tokens"], 64);
    assert!(
        (sent["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6,
        "{sent}"
    );

    // A request's own values win over the defaults.
    let mut own = open_webui_body("quiet");
    own["max_tokens"] = json!(5);
    own["temperature"] = json!(1.5);
    gw.post("/v1/chat/completions")
        .json(&own)
        .send()
        .await
        .unwrap();
    let sent = &up.received()[1].body;
    assert_eq!(sent["max_tokens"], 5);
    assert_eq!(sent["temperature"], 1.5);

    // `reject`: a 400 that names the model and the param; nothing sent upstream.
    let resp = gw
        .post("/v1/chat/completions")
        .json(&open_webui_body("strict"))
        .send()
        .await
        .unwrap();
    let (status, e) = error_of(resp).await;
    assert_eq!(status, 400);
    assert_eq!(e["param"], "tools");
    assert_eq!(e["code"], "tools_not_supported");
    assert!(e["message"].as_str().unwrap().contains("`strict`"), "{e}");
    assert_eq!(up.received().len(), 2);

    // An upstream's default: the tools go on unchanged, no warning.
    let resp = gw
        .post("/v1/chat/completions")
        .json(&open_webui_body("agent"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-hearth-warning").is_none());
    let sent = &up.received()[2].body;
    assert_eq!(sent["tools"], open_webui_body("agent")["tools"]);
    assert_eq!(sent["tool_choice"], "auto");
    assert!(
        sent.get("max_tokens").is_none(),
        "no defaults configured: {sent}"
    );
}

#[tokio::test]
async fn a_default_outside_its_range_is_refused_at_start_naming_the_key() {
    let err = hearth_config::load_str(
        &upstream_model(
            "m",
            "http://127.0.0.1:9/v1",
            "[models.defaults]\ntemperature = 7.0\nmax_tokens = 0",
        ),
        "test.toml",
        &hearth_config::MapEnv::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("models[0].defaults.temperature"), "{err}");
    assert!(err.contains("models[0].defaults.max_tokens"), "{err}");
}
