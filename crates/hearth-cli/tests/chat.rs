//! `hearth chat`: the real binary against a real server started here, its models
//! played by the fake upstream (what they receive is checked) or the real SmolLM2;
//! and `hearth keys`, an admin's view of what the chats spent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hearth_testkit::{Behaviour, FakeUpstream};
use serde_json::{Value, json};

mod common;
use common::{hearth, serve_in_process, turns};

const KEY: &str = "sk-chat-test-1";

/// A Hearth with one key and `models` (TOML `[[models]]` tables), stopping when
/// the sender is dropped.
async fn serve(data: &Path, models: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    serve_keyed(data, "", models).await
}

/// The same, `key` (TOML lines: limits, a budget) added to the key's table.
async fn serve_keyed(
    data: &Path,
    key: &str,
    models: &str,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let toml = format!(
        "[server]\nshutdown_grace_secs = 1\n[storage]\ndata_dir = \"{}\"\n[[keys]]\nname = \"cli\"\nkey = \"{KEY}\"\n{key}\n{models}",
        data.display()
    );
    serve_in_process(&toml).await
}

/// `[[models]]` for each name, all on `up`.
fn upstream_models(up: &FakeUpstream, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "[[models]]\nname = \"{n}\"\nbackend = \"upstream\"\nbase_url = \"{}\"\nretries = 0\n",
                up.base_url()
            )
        })
        .collect()
}

/// Runs `hearth chat ARGS` with `stdin` (None: no stdin at all) and the test's key
/// (off the runtime: the server runs on it): its exit code, stdout and stderr.
async fn chat(args: &[&str], stdin: Option<&str>, key: bool) -> (i32, String, String) {
    let mut cmd = hearth();
    cmd.arg("chat").args(args);
    if key {
        cmd.env("HEARTH_API_KEY", KEY);
    }
    common::run_blocking(cmd, stdin.map(str::to_owned)).await
}

/// `hearth chat --image dot.png "What is this?"`, the image ([`common::PNG`])
/// written into `dir` first: its path and what the command did.
async fn ask_about_a_png(base: &str, dir: &Path) -> (std::path::PathBuf, (i32, String, String)) {
    let png = dir.join("dot.png");
    std::fs::write(&png, common::PNG).unwrap();
    let args = [
        "--server",
        base,
        "--image",
        png.to_str().unwrap(),
        "What is this?",
    ];
    let ran = chat(&args, None, true).await;
    (png, ran)
}

/// The messages of each chat request the fake received.
fn sent(up: &FakeUpstream) -> Vec<Value> {
    up.received()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .map(|r| r.body)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_question_streams_its_answer_to_stdout_with_the_piped_text_after_it() {
    let up = FakeUpstream::start().await.unwrap();
    up.script_model("m", [Behaviour::ok("Three short lines, summed up.")]);
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m"])).await;
    let (code, out, err) = chat(
        &[
            "--server",
            &base,
            "--system",
            "Be brief.",
            "--max-tokens",
            "40",
            "--temperature",
            "0",
            "--stats",
            "Summarize this:",
        ],
        Some("line one\nline two\n"),
        true,
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "Three short lines, summed up.\n");
    assert!(
        err.contains("model m") && err.contains("first token"),
        "{err}"
    );
    let bodies = sent(&up);
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        bodies[0]["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Summarize this:\n\nline one\nline two"},
        ])
    );
    assert_eq!(bodies[0]["max_tokens"], 40);
    assert_eq!(bodies[0]["temperature"], 0.0);
    // Piped text alone is the question.
    let (code, out, err) = chat(&["--server", &base], Some("Only this.\n"), true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "Hello from the fake upstream.\n");
    assert_eq!(
        sent(&up)[1]["messages"],
        json!([{"role": "user", "content": "Only this."}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_keeps_its_turns_and_its_commands_change_it() {
    let up = FakeUpstream::start().await.unwrap();
    up.script_model("m", [Behaviour::ok("First answer.")]);
    up.script_model("other", [Behaviour::ok("Second answer.")]);
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m", "other"])).await;
    let input = "\
First question
/model nope
/model other
/system Answer in French.
/frobnicate
\"\"\"Two
lines\"\"\"
/bye
never sent
";
    let (code, out, err) = chat(&["--server", &base, "-i", "-m", "m"], Some(input), true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "First answer.\nSecond answer.\n");
    assert!(
        err.contains("the server has no model named 'nope'; it has: m, other"),
        "{err}"
    );
    assert!(err.contains("unknown command /frobnicate"), "{err}");
    let bodies = sent(&up);
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(
        bodies[1]["messages"],
        json!([
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer."},
            {"role": "user", "content": "Two\nlines"},
        ])
    );
    // After /clear the turns before are gone; the end of stdin ends it (exit 0).
    up.script_model("m", [Behaviour::ok("A."), Behaviour::ok("B.")]);
    let (code, out, err) = chat(
        &["--server", &base, "-i", "one"],
        Some("/clear\ntwo\n"),
        true,
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "A.\nB.\n");
    assert_eq!(
        sent(&up)[3]["messages"],
        json!([{"role": "user", "content": "two"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thinking_models_reasoning_goes_to_stderr_and_its_answer_to_stdout() {
    let up = FakeUpstream::start().await.unwrap();
    up.script_model(
        "m",
        [Behaviour::Reasoning {
            reasoning: "The user greets me; greet back.".into(),
            text: "Hello!".into(),
            delay: Duration::ZERO,
        }],
    );
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m"])).await;
    let (code, out, err) = chat(&["--server", &base, "Hi"], None, true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "Hello!\n");
    assert!(err.contains("The user greets me; greet back."), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_went_wrong_is_said_and_the_exit_is_1() {
    let up = FakeUpstream::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m"])).await;
    let cases: [(&[&str], Option<&str>, bool, &str); 5] = [
        // A model the server does not have: the server's own words.
        (
            &["--server", &base, "-m", "nope", "hi"],
            None,
            true,
            "The model `nope` does not exist",
        ),
        // Checked before the first message in a conversation.
        (
            &["--server", &base, "-i", "-m", "nope"],
            Some("hi\n"),
            true,
            "the server has no model named 'nope'; it has: m",
        ),
        (&["--server", &base, "hi"], None, false, "--api-key KEY"),
        (
            &["--server", "http://127.0.0.1:9", "hi"],
            None,
            true,
            "cannot reach Hearth at http://127.0.0.1:9",
        ),
        (&["--server", &base], None, true, "nothing to ask"),
    ];
    for (args, stdin, key, says) in cases {
        let (code, out, err) = chat(args, stdin, key).await;
        assert_eq!(code, 1, "{args:?}: {out}\n{err}");
        assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
    }
    assert!(sent(&up).is_empty());
    // A stream cut half-way: what came is shown, then why it stopped.
    up.script_model("m", [Behaviour::DropMidStream { after: 2 }]);
    let (code, out, err) = chat(&["--server", &base, "hi"], None, true).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.ends_with('\n') && !out.trim().is_empty(), "{out:?}");
    assert!(err.starts_with("error: "), "{err}");
}

/// `hearth chat ARGS` asked "count to eight" on stdin; SIGINT once the answer's
/// first words are out (the fake has been asked once), then "go on": its exit
/// code, stdout and stderr.
async fn interrupt_the_first_answer(up: &FakeUpstream, args: &[&str]) -> (i32, String, String) {
    let up = up.clone();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = hearth()
            .arg("chat")
            .args(&args)
            .env("HEARTH_API_KEY", KEY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"count to eight\n").unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (began, first_bytes) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 256];
            loop {
                let n = stdout.read(&mut buf).unwrap();
                if n == 0 {
                    return all;
                }
                if all.is_empty() {
                    let _ = began.send(());
                }
                all.extend_from_slice(&buf[..n]);
            }
        });
        // Interrupt once the answer's first words are out (seven more are 2.8 s
        // away); the next message is answered after.
        first_bytes
            .recv_timeout(Duration::from_secs(30))
            .expect("the answer began");
        assert_eq!(up.hits(), 1);
        let kill = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(b"go on\n").unwrap();
        drop(stdin);
        let out = reader.join().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        (
            status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out).into_owned(),
            err,
        )
    })
    .await
    .unwrap()
}

/// Eight words, 400 ms apart, then "Going on.".
fn slow_then_going_on(up: &FakeUpstream) {
    up.script_model(
        "m",
        [
            Behaviour::slow(
                "one two three four five six seven eight",
                8,
                Duration::from_millis(400),
            ),
            Behaviour::ok("Going on."),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_an_answer_and_the_conversation_goes_on() {
    let up = FakeUpstream::start().await.unwrap();
    slow_then_going_on(&up);
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m"])).await;
    let (code, out, err) = interrupt_the_first_answer(&up, &["--server", &base, "-i"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("(stopped)"), "{err}");
    assert!(out.ends_with("Going on.\n"), "{out:?}");
    let partial = out.trim_end_matches("Going on.\n").trim();
    assert!(
        !partial.is_empty() && !partial.contains("eight"),
        "the first answer should have been cut: {out:?}"
    );
    let bodies = sent(&up);
    assert_eq!(bodies.len(), 2);
    // The stopped answer stays as far as it came.
    assert_eq!(
        bodies[1]["messages"][1]["content"].as_str().unwrap().trim(),
        partial
    );
    // The server stopped asking the upstream for the rest.
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.cancelled() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.cancelled(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_model_answers_for_real() {
    let data = tempfile::tempdir().unwrap();
    let models = format!(
        "[[models]]\nname = \"smollm2\"\nbackend = \"embedded\"\npath = \"{}\"\ncontext = 2048\n",
        hearth_testkit::test_model_path().display()
    );
    let (base, _stop) = serve(data.path(), &models).await;
    let (code, out, err) = chat(
        &[
            "--server",
            &base,
            "--max-tokens",
            "8",
            "--temperature",
            "0",
            "--stats",
            "What is the capital of France?",
        ],
        None,
        true,
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.trim().is_empty(), "no answer: {err}");
    assert!(err.contains("model smollm2"), "{err}");
    assert!(err.contains(" completion tokens"), "{err}");
    // A model that cannot see images says so; nothing is answered.
    let (_, (code, out, err)) = ask_about_a_png(&base, data.path()).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("cannot see images"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_asks_to_come_back_later_is_waited_for_within_wait() {
    let up = FakeUpstream::start().await.unwrap();
    let busy = || Behaviour::Status {
        status: 503,
        retry_after: Some(1),
    };
    up.script_model("m", [busy(), Behaviour::ok("Ready now.")]);
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m"])).await;
    let (code, out, err) = chat(&["--server", &base, "hi"], None, true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "Ready now.\n");
    assert!(err.contains("waiting up to 120 s"), "{err}");
    assert_eq!(sent(&up).len(), 2);
    // `--wait 0`: the server's answer at once, and exit 1.
    up.script_model("m", [busy()]);
    let (code, out, err) = chat(&["--server", &base, "--wait", "0", "hi"], None, true).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(!err.contains("waiting"), "{err}");
    assert_eq!(sent(&up).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_go_inline_with_their_message() {
    use base64::Engine as _;
    let up = FakeUpstream::start().await.unwrap();
    up.script_model(
        "m",
        [
            Behaviour::ok("A tiny picture."),
            Behaviour::ok("Still tiny."),
            Behaviour::ok("No picture now."),
        ],
    );
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m"])).await;
    let (png, (code, out, err)) = ask_about_a_png(&base, data.path()).await;
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(common::PNG)
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        sent(&up)[0]["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}])
    );
    // In a conversation, `/image` sends one with the next message only.
    let input = format!("/image {}\nAnd now?\nWithout it?\n", png.display());
    let (code, out, err) = chat(&["--server", &base, "-i"], Some(&input), true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let bodies = sent(&up);
    assert_eq!(
        bodies[1]["messages"][0]["content"][1]["image_url"]["url"],
        url
    );
    assert_eq!(
        bodies[2]["messages"][2],
        json!({"role": "user", "content": "Without it?"})
    );
    // A file that is no image is refused before anything is sent.
    let text = data.path().join("notes.txt");
    std::fs::write(&text, "not an image").unwrap();
    let (code, out, err) = chat(
        &["--server", &base, "--image", text.to_str().unwrap(), "hi"],
        None,
        true,
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("is not a PNG, JPEG, GIF, WebP or BMP image"),
        "{err}"
    );
    assert_eq!(sent(&up).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_is_said_at_once_not_waited_for() {
    let up = FakeUpstream::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    // The fake's answers use 9 tokens each: two are admitted (0 and 9 used of 10).
    let (base, _stop) = serve_keyed(
        data.path(),
        "budget_tokens = 10\nbudget_period = \"day\"",
        &upstream_models(&up, &["m"]),
    )
    .await;
    let (code, out, err) = chat(&["--server", &base, "--stats", "hi"], None, true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let line = err.lines().last().unwrap();
    assert!(
        line.contains(" · budget 1 of 10 tokens left, renews ") && line.ends_with("T00:00:00Z"),
        "{err}"
    );
    let (code, out, err) = chat(&["--server", &base, "--stats", "hi"], None, true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains(" · budget 0 of 10 tokens left"), "{err}");
    let started = Instant::now();
    let (code, out, err) = chat(&["--server", &base, "again"], None, true).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("key `cli` has used its budget of 10 tokens this day (18 used)"),
        "{err}"
    );
    assert!(!err.contains("waiting"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(sent(&up).len(), 2);
}

/// `hearth keys` with an admin key: every key, its limits, and the tokens a chat
/// spent of its budget; another key is told it needs an admin one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_shows_an_admin_what_each_key_spent() {
    let up = FakeUpstream::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve_keyed(
        data.path(),
        "budget_tokens = 100\nbudget_period = \"month\"\nrpm = 30\n\n[[keys]]\nname = \"root\"\nkey = \"sk-root-test-1\"\nadmin = true",
        &upstream_models(&up, &["m"]),
    )
    .await;
    let (code, out, err) = chat(&["--server", &base, "hi"], None, true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let keys = |key: &'static str, json: bool| {
        let mut cmd = hearth();
        cmd.args(["keys", "--server", &base])
            .env("HEARTH_API_KEY", key);
        if json {
            cmd.arg("--json");
        }
        common::run_blocking(cmd, None)
    };
    let (code, out, err) = keys("sk-root-test-1", false).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("KEY   ADMIN  RPM  TPM  BUDGET     USED  LEFT  RENEWS"),
        "{out}"
    );
    // The fake's answer used 9 tokens; the month renews on its first day.
    let cli: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cli[..7],
        ["cli", "no", "30", "-", "100/month", "9", "91"],
        "{out}"
    );
    assert!(cli[7].ends_with("-01T00:00:00Z"), "{out}");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["root", "yes", "-", "-", "-", "-", "-", "-"],
        "{out}"
    );
    let (code, out, _) = keys("sk-root-test-1", true).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"][0]["budget"]["used"], 9, "{v}");
    let (code, out, err) = keys(KEY, false).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("key `cli` is not an admin key") && err.contains("admin = true"),
        "{err}"
    );
}

/// `GET path` on the test's server with its key, as JSON.
async fn get(base: &str, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// The id in "(kept in the history: BASE/c/ID)" on stderr.
fn kept_id(err: &str) -> String {
    let line = err
        .lines()
        .find(|l| l.starts_with("(kept in the history: "))
        .unwrap_or_else(|| panic!("no address of the saved conversation: {err}"));
    line.trim_end_matches(')')
        .rsplit_once("/c/")
        .unwrap()
        .1
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_chat_is_in_the_uis_history_and_resume_goes_on_with_it() {
    let up = FakeUpstream::start().await.unwrap();
    up.script_model("m", [Behaviour::ok("First answer.")]);
    up.script_model(
        "other",
        [
            Behaviour::ok("Second answer."),
            Behaviour::ok("Third answer."),
        ],
    );
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m", "other"])).await;

    // One question, kept: the conversation is titled by it and holds both turns.
    let (code, out, err) = chat(
        &[
            "--server",
            &base,
            "--save",
            "-m",
            "m",
            "-s",
            "Be brief.",
            "--stats",
            "First question",
        ],
        None,
        true,
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "First answer.\n");
    assert!(
        err.contains("model m · 5 prompt + 4 completion tokens"),
        "{err}"
    );
    let id = kept_id(&err);
    let c = get(&base, &format!("/api/hearth/conversations/{id}")).await;
    assert_eq!(c["title"], "First question");
    assert_eq!(c["model"], "m");
    assert_eq!(c["system_prompt"], "Be brief.");
    assert_eq!(
        turns(&c),
        [
            ("user".into(), "First question".into(), Value::Null),
            ("assistant".into(), "First answer.".into(), json!("stop")),
        ]
    );
    // The UI lists it.
    let list = get(&base, "/api/hearth/conversations").await;
    assert_eq!(list["data"][0]["id"], id.as_str());

    // Going on with it (by its address, as the UI shows it), on another model and
    // with a new system message: the model is asked with the turns so far.
    let input = "Second question\n/image dot.png\n/system Answer in French.\nThird\n";
    let (code, out, err) = chat(
        &[
            "--server",
            &base,
            "--resume",
            &format!("{base}/c/{id}"),
            "-m",
            "other",
            "-i",
        ],
        Some(input),
        true,
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "Second answer.\nThird answer.\n");
    assert!(err.contains("the history keeps text, not images"), "{err}");
    assert_eq!(kept_id(&err), id);
    let bodies = sent(&up);
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert_eq!(bodies[1]["model"], "other");
    assert_eq!(
        bodies[1]["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer."},
            {"role": "user", "content": "Second question"},
        ])
    );
    assert_eq!(
        bodies[2]["messages"][0],
        json!({"role": "system", "content": "Answer in French."})
    );
    let c = get(&base, &format!("/api/hearth/conversations/{id}")).await;
    assert_eq!(c["model"], "other");
    assert_eq!(c["system_prompt"], "Answer in French.");
    let kept: Vec<String> = turns(&c).into_iter().map(|t| t.1).collect();
    assert_eq!(
        kept,
        [
            "First question",
            "First answer.",
            "Second question",
            "Second answer.",
            "Third",
            "Third answer."
        ]
    );

    // What cannot be kept is refused before anything is sent; so is an id that is none.
    let (code, _, err) = chat(
        &["--server", &base, "--save", "--temperature", "0", "hi"],
        None,
        true,
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--temperature") && err.contains("--save"),
        "{err}"
    );
    let (code, _, err) = chat(
        &["--server", &base, "--resume", "../../v1/models", "hi"],
        None,
        true,
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not a conversation's id"), "{err}");
    let (code, _, err) = chat(
        &[
            "--server",
            &base,
            "--resume",
            "99999999-9999-4999-8999-999999999999",
            "hi",
        ],
        None,
        true,
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("99999999-9999-4999-8999-999999999999"),
        "{err}"
    );
    assert_eq!(sent(&up).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_message_the_model_could_not_take_yet_is_answered_once_not_stored_twice() {
    let up = FakeUpstream::start().await.unwrap();
    let busy = Behaviour::Status {
        status: 503,
        retry_after: Some(1),
    };
    up.script_model("m", [busy, Behaviour::ok("Ready now.")]);
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m"])).await;
    let (code, out, err) = chat(&["--server", &base, "--save", "hi"], None, true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "Ready now.\n");
    assert!(err.contains("waiting up to 120 s"), "{err}");
    assert_eq!(sent(&up).len(), 2);
    let c = get(
        &base,
        &format!("/api/hearth/conversations/{}", kept_id(&err)),
    )
    .await;
    let kept: Vec<String> = turns(&c).into_iter().map(|t| t.1).collect();
    assert_eq!(kept, ["hi", "Ready now."]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_a_saved_chat_keeps_the_answer_as_far_as_it_came_marked_stopped() {
    let up = FakeUpstream::start().await.unwrap();
    slow_then_going_on(&up);
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m"])).await;
    let (code, out, err) =
        interrupt_the_first_answer(&up, &["--server", &base, "-i", "--save"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("(stopped)"), "{err}");
    let partial = out.trim_end_matches("Going on.\n").trim();
    assert!(
        !partial.is_empty() && !partial.contains("eight"),
        "the first answer should have been cut: {out:?}"
    );
    let c = get(
        &base,
        &format!("/api/hearth/conversations/{}", kept_id(&err)),
    )
    .await;
    let t = turns(&c);
    assert_eq!(t.len(), 4, "{t:?}");
    assert_eq!((t[1].1.trim(), &t[1].2), (partial, &json!("stopped")));
    assert_eq!((t[3].1.as_str(), &t[3].2), ("Going on.", &json!("stop")));
    // The model was asked to go on from the cut answer.
    assert_eq!(
        sent(&up)[1]["messages"][1]["content"]
            .as_str()
            .unwrap()
            .trim(),
        partial
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_the_saved_conversations_and_prints_one_whole() {
    let up = FakeUpstream::start().await.unwrap();
    up.script_model(
        "m",
        [Behaviour::ok("Pack light."), Behaviour::ok("Forty-two.")],
    );
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &upstream_models(&up, &["m"])).await;
    let history = |args: &[&str]| {
        let mut cmd = hearth();
        cmd.arg("history")
            .args(["--server", &base])
            .args(args)
            .env("HEARTH_API_KEY", KEY);
        common::run_blocking(cmd, None)
    };
    let (code, out, err) = history(&[]).await;
    assert_eq!(
        (code, out.trim()),
        (
            0,
            "No conversations yet: `hearth chat --save` or the chat UI makes one."
        ),
        "{err}"
    );
    let (_, _, err) = chat(
        &["--server", &base, "--save", "-m", "m", "Trip to Lisbon?"],
        None,
        true,
    )
    .await;
    let trip = kept_id(&err);
    let (_, _, err) = chat(
        &["--server", &base, "--save", "The answer to everything?"],
        None,
        true,
    )
    .await;
    let answer = kept_id(&err);

    // Newest first; the id is what --resume takes.
    let (code, out, err) = history(&[]).await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert_eq!(rows[0], ["ID", "UPDATED", "(UTC)", "MODEL", "TITLE"]);
    assert_eq!(
        (rows[1][0], rows[1][3]),
        (answer.as_str(), "default"),
        "{out}"
    );
    assert_eq!(rows[1][4..], ["The", "answer", "to", "everything?"]);
    assert_eq!((rows[2][0], rows[2][3]), (trip.as_str(), "m"), "{out}");
    // Searched, limited, or as JSON.
    let (_, out, _) = history(&["--search", "lisbon"]).await;
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains(&trip), "{out}");
    let (_, out, err) = history(&["-n", "1"]).await;
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(err.contains("(more than 1: --limit N lists more"), "{err}");
    let (_, out, _) = history(&["--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let (_, out, _) = history(&["--search", "nowhere"]).await;
    assert_eq!(out.trim(), "No conversation says that.");

    // One whole: Markdown by its address, JSON by its id.
    let (code, out, err) = history(&[&format!("{base}/c/{trip}")]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Trip to Lisbon?") && out.contains("Pack light."),
        "{out}"
    );
    let (_, out, _) = history(&[&trip, "--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["messages"][1]["content"], "Pack light.");
    // A made-up id, a limit the server refuses, or not an id: exit 1, and why.
    let (code, out, err) = history(&["99999999-9999-4999-8999-999999999999"]).await;
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains("99999999-9999-4999-8999-999999999999"),
        "{err}"
    );
    let (code, _, err) = history(&["--limit", "0"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("limit"), "{err}");
    let (code, _, err) = history(&["x/../y"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not a conversation's id"), "{err}");
}
