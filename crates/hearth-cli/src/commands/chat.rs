//! `hearth chat`: talk to a model of a running Hearth from a terminal or a script.
//!
//! One question (`hearth chat "…"`, or text piped in) is answered on stdout as it
//! streams and the command ends; without a question on a terminal, or with `-i`,
//! it is a conversation: each line a message, the answers streamed, the turns
//! kept, Ctrl-C stopping an answer. A client of `/v1/chat/completions` like any
//! other: the server does the work (and its keys, limits and models apply).
//!
//! With `--save` or `--resume ID` the conversation lives in the server's history
//! instead, the one the chat UI shows: each message goes to
//! `/api/hearth/conversations/{id}/messages`, which stores it and its answer.

use std::io::{BufRead, IsTerminal, Read};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::client::{Client, Event, Events, ServerArgs, error_message};
use crate::output;

/// Exit status after Ctrl-C, as shells report a process ended by SIGINT.
const INTERRUPTED: u8 = 130;

const HELP: &str = "\
  /model NAME    answer with another model (the conversation stays)
  /system TEXT   set the system message (empty: none)
  /image FILE    send an image (PNG, JPEG, GIF, WebP, BMP) with the next message
  /clear         forget the conversation so far
  /bye           leave (also /exit, /quit, Ctrl-D)
  \"\"\"            begins and ends a message of several lines
  Ctrl-C stops an answer; at the prompt it leaves.";

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hearth chat \"Why is the sky blue?\"            one answer, streamed to stdout
  git diff | hearth chat \"Review this change\"   piped text goes after the question
  hearth chat -m qwen-coder                     a conversation on the terminal
  hearth chat --server https://ai.example.org   (with HEARTH_API_KEY in the environment)
  hearth chat --save \"Plan my week\"             kept in the chat UI's history
  hearth chat --resume 0b6f…                    go on with a conversation of the history")]
pub struct ChatArgs {
    /// What to ask. Text piped in is added after it (or is the question).
    /// Without either, on a terminal: a conversation, a message a line.
    #[arg(value_name = "PROMPT")]
    pub prompt: Option<String>,
    /// The model (a name `/v1/models` lists); default: the server's default model.
    #[arg(long, short, value_name = "NAME")]
    pub model: Option<String>,
    /// A system message at the start of the conversation.
    #[arg(long, short, value_name = "TEXT")]
    pub system: Option<String>,
    /// An image for the question (PNG, JPEG, GIF, WebP, BMP), sent inline to a
    /// model that reads images; repeat for several. In a conversation, with the
    /// first message. Not with --save or --resume (the history keeps text).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["save", "resume"])]
    pub image: Vec<std::path::PathBuf>,
    /// The most tokens an answer may have (the server's own limit applies too).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2 (0: the most likely tokens; default: the
    /// model's). Not with --save or --resume (the history's conversations use
    /// the model's).
    #[arg(long, value_name = "T", conflicts_with_all = ["save", "resume"])]
    pub temperature: Option<f64>,
    /// A conversation even when stdin is not a terminal: each line of stdin a
    /// message (after PROMPT, when given), answered in turn.
    #[arg(long, short)]
    pub interactive: bool,
    /// How long to wait, in seconds, while the server asks to come back later (a
    /// model still loading, a full queue, a rate limit) before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub wait: u64,
    /// After each answer, on stderr: its model, tokens, time to the first token and
    /// tokens per second.
    #[arg(long)]
    pub stats: bool,
    /// Keep the conversation in the server's history, the one the chat UI shows
    /// (titled by its first message); where it is is said on stderr at the end.
    #[arg(long)]
    pub save: bool,
    /// Go on with a conversation of the history (its id, or its address
    /// `…/c/ID`): its turns, model and system message; what is said is kept in it.
    #[arg(long, value_name = "ID", conflicts_with = "save")]
    pub resume: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(args: ChatArgs) -> ExitCode {
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let stdin = std::io::stdin();
    let interactive = args.interactive || (args.prompt.is_none() && stdin.is_terminal());
    let result = if interactive {
        runtime.block_on(converse(&args))
    } else {
        match question(args.prompt.as_deref(), &stdin) {
            Ok(q) => runtime.block_on(once(&args, q)),
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::err(format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// The one question: PROMPT, then what stdin holds when it is not a terminal.
fn question(prompt: Option<&str>, stdin: &std::io::Stdin) -> Result<String, String> {
    let mut piped = String::new();
    if !stdin.is_terminal() {
        let mut bytes = Vec::new();
        stdin
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        piped = String::from_utf8_lossy(&bytes).trim_end().to_owned();
    }
    let q = match (
        prompt.map(str::trim).filter(|p| !p.is_empty()),
        piped.is_empty(),
    ) {
        (Some(p), true) => p.to_owned(),
        (Some(p), false) => format!("{p}\n\n{piped}"),
        (None, false) => piped,
        (None, true) => {
            return Err(
                "nothing to ask: give a PROMPT, pipe text in, or run it on a terminal for a conversation"
                    .into(),
            );
        }
    };
    Ok(q)
}

/// Asks one question; exit 0 when it was answered.
async fn once(args: &ChatArgs, q: String) -> Result<ExitCode, String> {
    let client = Client::new(&args.server)?;
    let mut chat = Conversation::new(args);
    for path in &args.image {
        chat.attach(path)?;
    }
    if let Some(r) = &args.resume {
        resume(&client, &mut chat, r).await?;
    }
    let turn = reply(&client, &mut chat, args, &q, Stop::Never).await;
    chat.say_where_kept(&client);
    turn?.report(args.stats);
    Ok(ExitCode::SUCCESS)
}

/// The turns so far, and what the next request is made of.
struct Conversation {
    model: Option<String>,
    system: Option<String>,
    /// The user's and the model's messages, in order (the system message apart).
    messages: Vec<Value>,
    /// Images for the next message (`--image`, `/image`), as `data:` URLs.
    images: Vec<String>,
    /// Kept in the server's history (`--save`, `--resume`), not in `messages`.
    saved: Option<Saved>,
}

/// A conversation of the server's history.
#[derive(Default)]
struct Saved {
    /// Its id, once made (the first message makes it) or read (`--resume`).
    id: Option<String>,
    /// The system message changed since: written before the next message.
    system_changed: bool,
}

impl Conversation {
    fn new(args: &ChatArgs) -> Self {
        Conversation {
            model: args.model.clone(),
            system: args.system.clone().filter(|s| !s.is_empty()),
            messages: Vec::new(),
            images: Vec::new(),
            saved: (args.save || args.resume.is_some()).then(Saved::default),
        }
    }

    /// The saved conversation's address (on stderr: stdout is the answers).
    fn say_where_kept(&self, client: &Client) {
        if let Some(id) = self.saved.as_ref().and_then(|s| s.id.as_deref()) {
            output::err(format!("(kept in the history: {}/c/{id})", client.base));
        }
    }

    /// The user's next message, with the images waiting for it.
    fn ask(&mut self, text: &str) {
        if self.images.is_empty() {
            self.messages.push(message("user", text));
            return;
        }
        let mut parts = vec![json!({"type": "text", "text": text})];
        parts.extend(
            self.images
                .drain(..)
                .map(|url| json!({"type": "image_url", "image_url": {"url": url}})),
        );
        self.messages
            .push(json!({"role": "user", "content": Value::Array(parts)}));
    }

    /// Reads `path` as an image for the next message.
    fn attach(&mut self, path: &std::path::Path) -> Result<(), String> {
        self.images.push(data_url(path)?);
        Ok(())
    }

    fn body(&self, args: &ChatArgs) -> Value {
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        if let Some(s) = &self.system {
            messages.push(message("system", s));
        }
        messages.extend(self.messages.iter().cloned());
        let mut body = Map::new();
        if let Some(m) = &self.model {
            body.insert("model".into(), json!(m));
        }
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
        if let Some(n) = args.max_tokens {
            body.insert("max_tokens".into(), json!(n));
        }
        if let Some(t) = args.temperature {
            body.insert("temperature".into(), json!(t));
        }
        Value::Object(body)
    }
}

/// The most bytes of one image (servers refuse far less in a request body by
/// default; this only keeps a wrong file from being read whole).
const MAX_IMAGE: u64 = 64 << 20;

/// `path` as a `data:` URL, its type told by its first bytes.
fn data_url(path: &std::path::Path) -> Result<String, String> {
    use base64::Engine as _;
    let cannot = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
    let size = std::fs::metadata(path).map_err(|e| cannot(&e))?.len();
    if size > MAX_IMAGE {
        return Err(format!(
            "{} is {} MB: more than an image this client sends ({} MB)",
            path.display(),
            size >> 20,
            MAX_IMAGE >> 20
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| cannot(&e))?;
    let mime = image_type(&bytes).ok_or_else(|| {
        format!(
            "{} is not a PNG, JPEG, GIF, WebP or BMP image",
            path.display()
        )
    })?;
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    ))
}

fn image_type(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else if b.starts_with(b"BM") && b.len() > 14 {
        Some("image/bmp")
    } else {
        None
    }
}

fn patience(args: &ChatArgs) -> Duration {
    Duration::from_secs(args.wait)
}

fn message(role: &str, content: &str) -> Value {
    json!({"role": role, "content": content})
}

/// Whether Ctrl-C stops an answer (a conversation), or ends the command as usual.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Never,
    OnCtrlC,
}

/// One answer as it came.
#[derive(Default)]
struct Turn {
    text: String,
    model: Option<String>,
    finish: Option<String>,
    usage: Option<(u64, u64)>,
    /// From the request to the first token of text or reasoning.
    first: Option<Duration>,
    took: Duration,
    /// Stopped by Ctrl-C.
    stopped: bool,
    /// The key's token budget as the answer's headers said it (before this answer):
    /// tokens left, the budget, when it renews.
    budget: Option<(u64, u64, String)>,
}

impl Turn {
    /// What the person should know once it ended (on stderr: stdout is the answer).
    fn report(&self, stats: bool) {
        if self.stopped {
            output::err("(stopped)");
        } else if self.finish.as_deref() == Some("length") {
            output::err("(the answer reached its token limit: --max-tokens raises it)");
        }
        if stats {
            output::err(self.stats());
        }
    }

    fn stats(&self) -> String {
        let mut parts = vec![format!(
            "model {}",
            self.model.as_deref().unwrap_or("(not said)")
        )];
        if let Some((prompt, completion)) = self.usage {
            parts.push(format!("{prompt} prompt + {completion} completion tokens"));
        }
        if let Some(first) = self.first {
            parts.push(format!("first token {} ms", first.as_millis()));
            let decoding = self.took.saturating_sub(first).as_secs_f64();
            if let Some((_, completion)) = self.usage
                && completion > 1
                && decoding > 0.0
            {
                parts.push(format!(
                    "{:.1} tokens/s",
                    (completion - 1) as f64 / decoding
                ));
            }
        }
        parts.push(format!("{:.2} s", self.took.as_secs_f64()));
        if let Some((left, limit, renews)) = &self.budget {
            let spent = self.usage.map_or(0, |(p, c)| p + c);
            parts.push(format!(
                "budget {} of {limit} tokens left, renews {renews}",
                left.saturating_sub(spent)
            ));
        }
        parts.join(" · ")
    }
}

/// Asks `text` and streams its answer, in the conversation this process keeps
/// (`/v1/chat/completions`) or in the server's history.
async fn reply(
    client: &Client,
    chat: &mut Conversation,
    args: &ChatArgs,
    text: &str,
    stop: Stop,
) -> Result<Turn, String> {
    if chat.saved.is_some() {
        return reply_saved(client, chat, args, text, stop).await;
    }
    chat.ask(text);
    let body = chat.body(args);
    let request = async || {
        Ok(client
            .request(reqwest::Method::POST, "/v1/chat/completions")
            .json(&body))
    };
    match answer(client, request, completion_event, stop, patience(args)).await {
        Ok(turn) => {
            // A stopped answer stays as far as it came: the next message can say
            // "go on".
            chat.messages.push(message("assistant", &turn.text));
            if chat.model.is_none() {
                chat.model.clone_from(&turn.model);
            }
            Ok(turn)
        }
        Err(e) => {
            // Its images stay for the message sent again.
            if let Some(Value::Array(parts)) = chat.messages.pop().map(|m| m["content"].clone()) {
                chat.images.extend(
                    parts
                        .iter()
                        .filter_map(|p| p["image_url"]["url"].as_str().map(str::to_owned)),
                );
            }
            Err(e)
        }
    }
}

/// `text` sent to the conversation of the history (made first when it is new):
/// the server stores it, asks the model, and stores the answer as it streams.
async fn reply_saved(
    client: &Client,
    chat: &mut Conversation,
    args: &ChatArgs,
    text: &str,
    stop: Stop,
) -> Result<Turn, String> {
    let id = saved_conversation(client, chat).await?;
    let mut body = Map::new();
    if let Some(m) = &chat.model {
        body.insert("model".into(), json!(m));
    }
    if let Some(n) = args.max_tokens {
        body.insert("max_tokens".into(), json!(n));
    }
    let again = Value::Object(body.clone());
    body.insert("content".into(), json!(text));
    let first = Value::Object(body);
    let base = format!("/api/hearth/conversations/{id}");
    let mut tries = 0;
    let request = async || {
        tries += 1;
        // A try refused by the model's queue or a rate limit came after the server
        // stored the message: then its answer is asked for, the message not sent
        // twice. (A refusal before the handler stored nothing.)
        let regenerate = tries > 1 && last_is_unanswered(client, &base, text).await?;
        Ok(if regenerate {
            client
                .request(reqwest::Method::POST, &format!("{base}/regenerate"))
                .json(&again)
        } else {
            client
                .request(reqwest::Method::POST, &format!("{base}/messages"))
                .json(&first)
        })
    };
    answer(client, request, history_event, stop, patience(args)).await
}

/// Whether the conversation's last message is the user's `text`, with no answer.
async fn last_is_unanswered(client: &Client, base: &str, text: &str) -> Result<bool, String> {
    let c = client.get_json(base).await?;
    let last = c["messages"].as_array().and_then(|m| m.last());
    Ok(last.is_some_and(|m| m["role"] == "user" && m["content"] == text))
}

/// The saved conversation's id: made now (with the model and system message) when
/// it is new, its system message written when it changed.
async fn saved_conversation(client: &Client, chat: &mut Conversation) -> Result<String, String> {
    let (model, system) = (chat.model.clone(), chat.system.clone());
    let Some(saved) = chat.saved.as_mut() else {
        return Err("this conversation is not kept in the history".into());
    };
    match saved.id.clone() {
        None => {
            let made = client
                .send_json(
                    client
                        .request(reqwest::Method::POST, "/api/hearth/conversations")
                        .json(&json!({"model": model, "system_prompt": system})),
                )
                .await?;
            let id = made["id"]
                .as_str()
                .ok_or("the server's answer has no conversation id")?
                .to_owned();
            saved.id = Some(id.clone());
            saved.system_changed = false;
            Ok(id)
        }
        Some(id) => {
            if saved.system_changed {
                client
                    .send_json(
                        client
                            .request(
                                reqwest::Method::PATCH,
                                &format!("/api/hearth/conversations/{id}"),
                            )
                            .json(&json!({"system_prompt": system})),
                    )
                    .await?;
                saved.system_changed = false;
            }
            Ok(id)
        }
    }
}

/// Reads a conversation of the history to go on with it: its model and system
/// message (unless `--model`/`--system` say others), and says what it is on a
/// terminal.
async fn resume(client: &Client, chat: &mut Conversation, which: &str) -> Result<(), String> {
    let id = super::history::conversation_id(which)?;
    let c = client
        .get_json(&format!("/api/hearth/conversations/{id}"))
        .await?;
    if chat.model.is_none() {
        chat.model = c["model"].as_str().map(str::to_owned);
    }
    let saved = chat.saved.get_or_insert_with(Saved::default);
    saved.id = Some(id.to_owned());
    if chat.system.is_some() {
        saved.system_changed = true;
    } else {
        chat.system = c["system_prompt"].as_str().map(str::to_owned);
    }
    if std::io::stderr().is_terminal() {
        let turns = c["messages"].as_array().map_or(0, Vec::len);
        output::err(format!(
            "Going on with “{}” ({turns} messages so far).",
            c["title"]
                .as_str()
                .filter(|t| !t.is_empty())
                .unwrap_or("New chat")
        ));
    }
    Ok(())
}

/// What one event of an answer says: pieces of text (`true`: thinking), in order.
type Pieces = Vec<(String, bool)>;

/// A `/v1/chat/completions` chunk.
fn completion_event(v: &Value, turn: &mut Turn) -> Result<Pieces, String> {
    if let Some(m) = error_message(v) {
        return Err(m.to_owned());
    }
    if let Some(m) = v["model"].as_str() {
        turn.model = Some(m.to_owned());
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        turn.usage = Some((
            u["prompt_tokens"].as_u64().unwrap_or(0),
            u["completion_tokens"].as_u64().unwrap_or(0),
        ));
    }
    let Some(choice) = v["choices"].get(0) else {
        return Ok(Vec::new());
    };
    let delta = &choice["delta"];
    let pieces = [("reasoning_content", true), ("content", false)]
        .into_iter()
        .filter_map(|(field, thinking)| {
            delta[field]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(|s| (s.to_owned(), thinking))
        })
        .collect();
    if let Some(f) = choice["finish_reason"].as_str() {
        turn.finish = Some(f.to_owned());
    }
    Ok(pieces)
}

/// An event of a reply in the history (`start`, `delta`, `reasoning`, `done`,
/// `error`: docs/ui.md).
fn history_event(v: &Value, turn: &mut Turn) -> Result<Pieces, String> {
    let text = |thinking| {
        Ok(v["content"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(|s| vec![(s.to_owned(), thinking)])
            .unwrap_or_default())
    };
    match v["type"].as_str() {
        Some("start") => {
            turn.model = v["model"].as_str().map(str::to_owned);
            Ok(Vec::new())
        }
        Some("delta") => text(false),
        Some("reasoning") => text(true),
        Some("done") => {
            let m = &v["message"];
            if let (Some(p), Some(c)) =
                (m["prompt_tokens"].as_u64(), m["completion_tokens"].as_u64())
            {
                turn.usage = Some((p, c));
            }
            // Always said; "the stream ended" otherwise.
            turn.finish = Some(m["finish_reason"].as_str().unwrap_or("stop").to_owned());
            Ok(Vec::new())
        }
        Some("error") => Err(error_message(v).unwrap_or("the reply failed").to_owned()),
        _ => Ok(Vec::new()),
    }
}

/// Streams one answer to the request `make` builds (again while the server asks to
/// come back later, within `wait`): its text to stdout as it comes, its reasoning
/// (a thinking model's) to stderr, dimmed on a terminal. `read` reads each event.
async fn answer(
    client: &Client,
    make: impl AsyncFnMut() -> Result<reqwest::RequestBuilder, String>,
    read: fn(&Value, &mut Turn) -> Result<Pieces, String>,
    stop: Stop,
    wait: Duration,
) -> Result<Turn, String> {
    let ctrl_c = async {
        if stop == Stop::OnCtrlC {
            let _ = tokio::signal::ctrl_c().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(ctrl_c);
    let mut turn = Turn::default();
    let asked = Instant::now();
    // Times count from the request that was answered, not from the waiting.
    let (resp, start) = tokio::select! {
        r = client.send_patiently(make, wait) => r?,
        () = &mut ctrl_c => {
            turn.stopped = true;
            turn.took = asked.elapsed();
            return Ok(turn);
        }
    };
    turn.budget = budget_of(resp.headers());
    let mut out = Printer::new();
    let mut events = Events::new(resp);
    let ended = loop {
        let next = tokio::select! {
            e = events.next() => e,
            () = &mut ctrl_c => {
                turn.stopped = true;
                break true;
            }
        };
        let v = match next {
            Ok(Some(Event::Json(v))) => v,
            Ok(Some(Event::Done)) => break true,
            Ok(None) => break false,
            Err(e) => {
                out.end();
                return Err(e);
            }
        };
        let pieces = match read(&v, &mut turn) {
            Ok(p) => p,
            Err(e) => {
                out.end();
                return Err(e);
            }
        };
        for (s, thinking) in pieces {
            turn.first.get_or_insert_with(|| start.elapsed());
            out.write(&s, thinking);
            if !thinking {
                turn.text.push_str(&s);
            }
        }
    };
    out.end();
    turn.took = start.elapsed();
    if !ended && turn.finish.is_none() {
        return Err("the answer broke off: the server closed the stream before its end".into());
    }
    Ok(turn)
}

/// The `x-hearth-budget-*` headers of an answer to a key with a token budget.
fn budget_of(h: &reqwest::header::HeaderMap) -> Option<(u64, u64, String)> {
    let text = |name: &str| h.get(name)?.to_str().ok();
    let number = |name: &str| text(name)?.parse::<u64>().ok();
    Some((
        number("x-hearth-budget-remaining-tokens")?,
        number("x-hearth-budget-limit-tokens")?,
        text("x-hearth-budget-renews-at")?.to_owned(),
    ))
}

/// Writes an answer as it streams: text to stdout, reasoning to stderr.
struct Printer {
    /// stderr is a terminal: reasoning is dimmed.
    dim: bool,
    /// What the last write went to (`Some(true)`: reasoning).
    last: Option<bool>,
    /// The last byte written to stdout was a newline (or nothing was written).
    at_line_start: bool,
}

impl Printer {
    fn new() -> Self {
        Printer {
            dim: std::io::stderr().is_terminal(),
            last: None,
            at_line_start: true,
        }
    }

    fn write(&mut self, s: &str, thinking: bool) {
        if thinking {
            if self.last != Some(true) && self.dim {
                output::err_text("\x1b[2m");
            }
            output::err_text(s);
        } else {
            if self.last == Some(true) {
                self.close_reasoning();
            }
            output::text(s);
            self.at_line_start = s.ends_with('\n');
        }
        self.last = Some(thinking);
    }

    fn close_reasoning(&mut self) {
        output::err_text(if self.dim { "\x1b[0m\n" } else { "\n" });
    }

    /// Ends the answer on a line of its own.
    fn end(&mut self) {
        if self.last == Some(true) {
            self.close_reasoning();
        }
        if !self.at_line_start {
            output::text("\n");
            self.at_line_start = true;
        }
        self.last = None;
    }
}

/// A conversation: messages from stdin (a line each, `"""` around several), each
/// answered in turn. Exit 0 at the end of stdin or `/bye`, 130 on Ctrl-C at the
/// prompt.
async fn converse(args: &ChatArgs) -> Result<ExitCode, String> {
    let client = Client::new(&args.server)?;
    let terminal = std::io::stdin().is_terminal();
    let mut chat = Conversation::new(args);
    for path in &args.image {
        chat.attach(path)?;
    }
    // A wrong address, key or model is said now, not after the first message.
    let models = models(&client).await?;
    if let Some(m) = &chat.model {
        check_model(m, &models)?;
    }
    if let Some(r) = &args.resume {
        resume(&client, &mut chat, r).await?;
    }
    let code = talk(&client, &mut chat, args, &models, terminal).await;
    chat.say_where_kept(&client);
    code
}

/// The conversation's turns until the end of stdin, `/bye` or Ctrl-C.
async fn talk(
    client: &Client,
    chat: &mut Conversation,
    args: &ChatArgs,
    models: &[String],
    terminal: bool,
) -> Result<ExitCode, String> {
    if terminal {
        output::err(format!(
            "Talking to {} at {}{}. /help for commands, Ctrl-D to leave.",
            chat.model.as_deref().unwrap_or("the default model"),
            client.base,
            if chat.saved.is_some() {
                ", kept in the history"
            } else {
                ""
            }
        ));
    }
    let mut lines = stdin_lines();
    let mut first = args.prompt.clone().filter(|p| !p.trim().is_empty());
    loop {
        let text = match first.take() {
            Some(p) => p,
            None => {
                if terminal {
                    output::err_text(">>> ");
                }
                match read_message(&mut lines, terminal).await {
                    Input::Message(m) => m,
                    Input::End => return Ok(ExitCode::SUCCESS),
                    Input::Interrupted => {
                        output::err("");
                        return Ok(ExitCode::from(INTERRUPTED));
                    }
                }
            }
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if let Some(command) = text.strip_prefix('/')
            && !text.starts_with("//")
        {
            match command_of(command, chat, models) {
                Ok(true) => continue,
                Ok(false) => return Ok(ExitCode::SUCCESS),
                Err(e) => {
                    output::err(e);
                    continue;
                }
            }
        }
        // `//x` sends `/x`.
        let text = text
            .strip_prefix('/')
            .filter(|t| t.starts_with('/'))
            .unwrap_or(text);
        match reply(client, chat, args, text, Stop::OnCtrlC).await {
            Ok(turn) => turn.report(args.stats),
            Err(e) => output::err(format!("error: {e}")),
        }
    }
}

/// The names of the models the server serves (`/v1/models`).
async fn models(client: &Client) -> Result<Vec<String>, String> {
    let list = client.get_json("/v1/models").await?;
    Ok(list["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect())
}

fn check_model(name: &str, models: &[String]) -> Result<(), String> {
    if models.iter().any(|m| m == name) {
        return Ok(());
    }
    Err(format!(
        "the server has no model named '{name}'; it has: {}",
        if models.is_empty() {
            "none".to_owned()
        } else {
            models.join(", ")
        }
    ))
}

/// Runs a `/command`: `Ok(true)` to go on, `Ok(false)` to leave, `Err` to say why
/// it was not done.
fn command_of(command: &str, chat: &mut Conversation, models: &[String]) -> Result<bool, String> {
    let (name, rest) = command
        .split_once(char::is_whitespace)
        .map_or((command, ""), |(n, r)| (n, r.trim()));
    match name {
        "bye" | "exit" | "quit" => return Ok(false),
        "help" | "?" => output::err(HELP),
        "image" if rest.is_empty() => output::err(format!(
            "{} image(s) wait for the next message; /image FILE adds one",
            chat.images.len()
        )),
        "image" if chat.saved.is_some() => {
            return Err(
                "the history keeps text, not images: run hearth chat without --save or --resume to send one"
                    .into(),
            );
        }
        "image" => {
            chat.attach(std::path::Path::new(rest))?;
            output::err(format!("(the next message takes {rest})"));
        }
        "clear" if chat.saved.is_some() => {
            chat.saved = Some(Saved::default());
            output::err(
                "(a new conversation from the next message; the last one stays in the history)",
            );
        }
        "clear" => {
            chat.messages.clear();
            chat.images.clear();
            output::err("(the conversation is forgotten)");
        }
        "model" if rest.is_empty() => output::err(format!(
            "model: {}; the server has: {}",
            chat.model.as_deref().unwrap_or("the default"),
            models.join(", ")
        )),
        "model" => {
            check_model(rest, models)?;
            chat.model = Some(rest.to_owned());
            output::err(format!("(now talking to {rest})"));
        }
        "system" => {
            chat.system = Some(rest.to_owned()).filter(|s| !s.is_empty());
            if let Some(saved) = &mut chat.saved {
                saved.system_changed = true;
            }
            output::err(if rest.is_empty() {
                "(no system message)"
            } else {
                "(system message set)"
            });
        }
        _ => {
            return Err(format!(
                "unknown command /{name}: /help lists them (start a message with // to send a /)"
            ));
        }
    }
    Ok(true)
}

/// stdin's lines, read on a thread of their own (a read in progress never holds up
/// the runtime or the exit).
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            if tx.send(line.trim_end_matches('\r').to_owned()).is_err() {
                break;
            }
        }
    });
    rx
}

enum Input {
    Message(String),
    End,
    Interrupted,
}

/// The next message: a line, or the lines between two `"""`.
async fn read_message(lines: &mut mpsc::UnboundedReceiver<String>, terminal: bool) -> Input {
    let mut block: Option<Vec<String>> = None;
    loop {
        let line = tokio::select! {
            l = lines.recv() => l,
            _ = tokio::signal::ctrl_c() => return Input::Interrupted,
        };
        let Some(line) = line else {
            // The end of stdin inside a block sends what it holds.
            return match block {
                Some(b) if !b.is_empty() => Input::Message(b.join("\n")),
                _ => Input::End,
            };
        };
        match &mut block {
            None => match line.trim_start().strip_prefix("\"\"\"") {
                None => return Input::Message(line),
                Some(rest) => {
                    if let Some(one) = rest.strip_suffix("\"\"\"") {
                        return Input::Message(one.to_owned());
                    }
                    block = Some(if rest.is_empty() {
                        Vec::new()
                    } else {
                        vec![rest.to_owned()]
                    });
                }
            },
            Some(b) => match line.trim_end().strip_suffix("\"\"\"") {
                Some(last) => {
                    if !last.is_empty() {
                        b.push(last.to_owned());
                    }
                    return Input::Message(b.join("\n"));
                }
                None => b.push(line),
            },
        }
        if terminal {
            output::err_text("... ");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ChatArgs {
        ChatArgs {
            prompt: None,
            model: None,
            system: None,
            image: Vec::new(),
            max_tokens: None,
            temperature: None,
            interactive: false,
            wait: 0,
            stats: false,
            save: false,
            resume: None,
            server: ServerArgs {
                server: String::new(),
                api_key: None,
            },
        }
    }

    #[test]
    fn a_request_names_only_what_was_asked() {
        let a = args();
        let mut chat = Conversation::new(&a);
        chat.messages.push(message("user", "hi"));
        assert_eq!(
            chat.body(&a),
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": true,
                   "stream_options": {"include_usage": true}})
        );
        let a = ChatArgs {
            model: Some("m".into()),
            system: Some("be brief".into()),
            max_tokens: Some(5),
            temperature: Some(0.0),
            ..args()
        };
        let mut chat = Conversation::new(&a);
        chat.messages.push(message("user", "hi"));
        let body = chat.body(&a);
        assert_eq!(body["model"], "m");
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["temperature"], 0.0);
    }

    #[tokio::test]
    async fn a_block_between_triple_quotes_is_one_message() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for l in [
            "\"\"\"first",
            "second",
            "third\"\"\"",
            "\"\"\"one\"\"\"",
            "plain",
            "\"\"\"",
            "open",
        ] {
            tx.send(l.to_owned()).unwrap();
        }
        drop(tx);
        let mut got = Vec::new();
        loop {
            match read_message(&mut rx, false).await {
                Input::Message(m) => got.push(m),
                Input::End => break,
                Input::Interrupted => unreachable!(),
            }
        }
        assert_eq!(got, ["first\nsecond\nthird", "one", "plain", "open"]);
    }

    #[test]
    fn commands_change_the_conversation_and_unknown_ones_are_refused() {
        let a = args();
        let mut chat = Conversation::new(&a);
        let models = vec!["a".to_owned(), "b".to_owned()];
        chat.messages.push(message("user", "hi"));
        assert_eq!(command_of("model b", &mut chat, &models), Ok(true));
        assert_eq!(chat.model.as_deref(), Some("b"));
        let e = command_of("model zz", &mut chat, &models).unwrap_err();
        assert!(
            e.contains("no model named 'zz'") && e.contains("a, b"),
            "{e}"
        );
        assert_eq!(chat.model.as_deref(), Some("b"));
        assert_eq!(
            command_of("system  be brief ", &mut chat, &models),
            Ok(true)
        );
        assert_eq!(chat.system.as_deref(), Some("be brief"));
        assert_eq!(command_of("clear", &mut chat, &models), Ok(true));
        assert!(chat.messages.is_empty());
        assert!(command_of("frobnicate", &mut chat, &models).is_err());
        assert_eq!(command_of("bye", &mut chat, &models), Ok(false));
    }

    #[test]
    fn images_are_told_by_their_first_bytes() {
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(image_type(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(image_type(b"GIF89a..."), Some("image/gif"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(
            image_type(b"BM\0\0\0\0\0\0\0\0\0\0\0\0\0"),
            Some("image/bmp")
        );
        assert_eq!(image_type(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(image_type(b"%PDF-1.7"), None);
        assert_eq!(image_type(b""), None);
    }

    #[test]
    fn stats_say_speed_only_when_it_can_be_known() {
        let t = Turn {
            model: Some("m".into()),
            usage: Some((10, 21)),
            first: Some(Duration::from_millis(100)),
            took: Duration::from_millis(1100),
            ..Turn::default()
        };
        assert_eq!(
            t.stats(),
            "model m · 10 prompt + 21 completion tokens · first token 100 ms · 20.0 tokens/s · 1.10 s"
        );
        let t = Turn {
            took: Duration::from_millis(50),
            ..Turn::default()
        };
        assert_eq!(t.stats(), "model (not said) · 0.05 s");
        // A key with a budget: what is left after this answer.
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-hearth-budget-limit-tokens", "1000".parse().unwrap());
        h.insert("x-hearth-budget-remaining-tokens", "400".parse().unwrap());
        h.insert(
            "x-hearth-budget-renews-at",
            "2026-12-03T00:00:00Z".parse().unwrap(),
        );
        let t = Turn {
            usage: Some((10, 21)),
            took: Duration::from_millis(50),
            budget: budget_of(&h),
            ..Turn::default()
        };
        assert_eq!(
            t.stats(),
            "model (not said) · 10 prompt + 21 completion tokens · 0.05 s · budget 369 of 1000 tokens left, renews 2026-12-03T00:00:00Z"
        );
        h.remove("x-hearth-budget-renews-at");
        assert_eq!(budget_of(&h), None);
    }
}
