//! Tool calling on the embedded engine, in llama.cpp's "generic" format: the
//! tools go into the system prompt with their argument schemas, the answer is
//! constrained by a grammar to one JSON object, either `{"response": …}` (a reply
//! to the user) or `{"tool_calls": [{"name": …, "arguments": {…}}, …]}` (with
//! `parallel_tool_calls: false`, one `{"tool_call": {…}}`), and that object is
//! read back as it streams into text deltas or tool-call deltas.
//!
//! This is the format llama-server uses for a model whose chat template has no
//! tool syntax of its own. A model whose template has Hermes' syntax (Qwen2.5 and
//! Qwen3, Hermes 2 and 3, and their fine-tunes: the template holds `<tool_call>`)
//! is asked in the words it was trained on ([`Syntax::Hermes`]): the tools in
//! `<tools></tools>` in the system prompt, each call `<tool_call>{"name": …,
//! "arguments": …}</tool_call>`, results in `<tool_response>`; under `auto` it
//! writes freely and its calls are read out of its text, under `required` or a
//! named function a grammar holds it to one or more calls. Llama 3.x
//! ([`Syntax::Llama3`]: a call is `{"name": …, "parameters": …}`, results come
//! back in `ipython` turns), Mistral ([`Syntax::Mistral`]: `[TOOL_CALLS][{"name":
//! …, "arguments": …}]`, results in `[TOOL_RESULTS]`, call ids of 9 letters and
//! digits) and Mistral's newer models ([`Syntax::MistralArgs`]: each call
//! `[TOOL_CALLS]name[ARGS]{…}`, with `[CALL_ID]id` before `[ARGS]` in tokenizer v11)
//! write their tools' words only in their template's Jinja source, which
//! the C template API does not render: for them the GGUF's template itself is
//! rendered (`jinja`), with the request's messages and tools as Hugging Face's
//! `apply_chat_template` passes them, and their answers are read in their shape.
//! A template that does not render falls back to the generic format.

use hearth_api::{ApiError, ChatCompletionRequest, ChatMessage};
use hearth_router::{Event as Out, ToolCallDelta};
use serde_json::{Map, Value, json};

/// One function a request offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// The JSON schema of its arguments (`{"type": "object"}` when left out).
    pub parameters: Value,
}

impl Tool {
    /// `{"name", "description", "parameters"}`, as tools are shown to a model.
    fn function(&self) -> Value {
        let mut f = Map::new();
        f.insert("name".into(), Value::String(self.name.clone()));
        if let Some(d) = &self.description {
            f.insert("description".into(), Value::String(d.clone()));
        }
        f.insert("parameters".into(), self.parameters.clone());
        Value::Object(f)
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// The model decides: a reply or calls.
    Auto,
    /// At least one call.
    Required,
    /// A call of exactly this function.
    Named(String),
}

/// How a model writes its tool calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Syntax {
    /// llama.cpp's generic JSON format (see the module's documentation).
    #[default]
    Generic,
    /// Hermes' `<tool_call>` tags, for a model whose chat template has them (Qwen2.5,
    /// Qwen3, Hermes 2 and 3), with the prompt rendered by the template's Jinja
    /// source (by Hearth, in Qwen's words, where it does not render here).
    Hermes,
    /// Llama 3.x's JSON calls (`{"name", "parameters"}`), one at a time, with the
    /// prompt rendered by the template's Jinja source.
    Llama3,
    /// Mistral's `[TOOL_CALLS]` list, with the prompt rendered by the template's
    /// Jinja source.
    Mistral,
    /// Mistral's newer tokenizers (v11 and later: Mistral Small 3.2, Magistral,
    /// Devstral): each call `[TOOL_CALLS]name[ARGS]{…}`, in v11 with `[CALL_ID]id`
    /// before `[ARGS]`, after any text; the prompt rendered by the template's Jinja
    /// source.
    MistralArgs,
}

impl Syntax {
    /// The syntax a chat template (its Jinja source, from the GGUF) teaches.
    pub fn of_template(template: Option<&str>) -> Syntax {
        match template {
            Some(t) if t.contains("<tool_call>") => Syntax::Hermes,
            Some(t) if t.contains("[TOOL_CALLS]") && t.contains("[ARGS]") => Syntax::MistralArgs,
            Some(t) if t.contains("[TOOL_CALLS]") && t.contains("[AVAILABLE_TOOLS]") => {
                Syntax::Mistral
            }
            Some(t)
                if t.contains("<|start_header_id|>")
                    && t.contains("ipython")
                    && t.contains("\"parameters\"") =>
            {
                Syntax::Llama3
            }
            _ => Syntax::Generic,
        }
    }

    /// Whether the prompt is the template's own Jinja rendering, where the
    /// template renders here.
    pub fn renders_jinja(self) -> bool {
        self == Syntax::Hermes || self.needs_jinja()
    }

    /// Whether only the template's Jinja source writes the syntax's words (a
    /// template that does not render here leaves its model the generic format);
    /// Hermes' Hearth also writes as Qwen's template does.
    pub fn needs_jinja(self) -> bool {
        matches!(self, Syntax::Llama3 | Syntax::Mistral | Syntax::MistralArgs)
    }

    /// Its name in `/v1/models` (`tool_format`) and the logs.
    pub fn name(self) -> &'static str {
        match self {
            Syntax::Generic => "generic",
            Syntax::Hermes => "hermes",
            Syntax::Llama3 => "llama3",
            Syntax::Mistral => "mistral",
            Syntax::MistralArgs => "mistral-args",
        }
    }

    /// Whether the template takes back only call ids of 9 letters and digits.
    fn short_ids(self) -> bool {
        matches!(self, Syntax::Mistral | Syntax::MistralArgs)
    }
}

/// The tools of a request that uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolMode {
    pub tools: Vec<Tool>,
    pub choice: Choice,
    /// `parallel_tool_calls` (OpenAI's default: true): a list of calls, else one.
    pub parallel: bool,
    /// How the model writes calls.
    pub syntax: Syntax,
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls`. `None` when the request
/// offers no tools or says `tool_choice: "none"`. `check` vets each tool's
/// argument schema (the grammar's keywords), given the parameter to name.
pub fn from_chat(
    r: &ChatCompletionRequest,
    check: impl Fn(&Value, &str) -> Result<(), ApiError>,
) -> Result<Option<ToolMode>, ApiError> {
    let tools = match r.extra.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, t)| tool(i, t, &check))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "tools",
                "`tools` must be a list of {\"type\": \"function\", \"function\": {\"name\": …, \"parameters\": {…}}}",
            ));
        }
    };
    let choice = match r.extra.get("tool_choice") {
        None | Some(Value::Null) => Some(Choice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(Choice::Auto),
            "none" => None,
            "required" => Some(Choice::Required),
            other => {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    format!(
                        "`tool_choice` is \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": …}}}}, not {other:?}"
                    ),
                ));
            }
        },
        Some(v) => {
            let name = v
                .pointer("/function/name")
                .and_then(Value::as_str)
                .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "tool_choice",
                        "a named `tool_choice` is {\"type\": \"function\", \"function\": {\"name\": …}}",
                    )
                })?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    format!(
                        "`tool_choice` names the function `{name}`, which is not among the request's `tools`"
                    ),
                )
                .with_code("unknown_tool"));
            }
            Some(Choice::Named(name.to_owned()))
        }
    };
    let parallel = match r.extra.get("parallel_tool_calls") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "parallel_tool_calls",
                "`parallel_tool_calls` must be true or false",
            ));
        }
    };
    let Some(choice) = choice else {
        return Ok(None);
    };
    if tools.is_empty() {
        return match choice {
            Choice::Auto => Ok(None),
            _ => Err(ApiError::invalid_param(
                "tool_choice",
                "`tool_choice` asks for a tool call, but the request has no `tools`",
            )),
        };
    }
    Ok(Some(ToolMode {
        tools,
        choice,
        parallel,
        syntax: Syntax::Generic,
    }))
}

fn tool(
    i: usize,
    t: &Value,
    check: &impl Fn(&Value, &str) -> Result<(), ApiError>,
) -> Result<Tool, ApiError> {
    let bad = |what: &str| ApiError::invalid_param(format!("tools[{i}]"), what.to_owned());
    if t.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad(
            "only function tools are served: {\"type\": \"function\", \"function\": {…}}",
        ));
    }
    let f = t
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad("a function tool needs `function`: {\"name\": …, \"parameters\": {…}}")
        })?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .ok_or_else(|| {
            bad("`function.name` must be 1 to 64 letters, digits, underscores or dashes")
        })?;
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => {
            check(p, &format!("tools[{i}].function.parameters"))?;
            p.clone()
        }
        Some(_) => return Err(bad("`function.parameters` must be a JSON schema object")),
    };
    Ok(Tool {
        name: name.to_owned(),
        description: f
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        parameters,
    })
}

impl ToolMode {
    /// The JSON schema the answer must follow; `response` is the schema of a
    /// reply (a `response_format`'s, else a string).
    pub fn schema(&self, response: Option<&Value>) -> Value {
        let (one, most) = self.one_call();
        let call = if self.parallel {
            json!({
                "type": "object",
                "properties": {"tool_calls": {"type": "array", "items": one, "minItems": 1, "maxItems": most}},
                "required": ["tool_calls"],
            })
        } else {
            json!({
                "type": "object",
                "properties": {"tool_call": one},
                "required": ["tool_call"],
            })
        };
        match self.choice {
            Choice::Auto => json!({"anyOf": [call, {
                "type": "object",
                "properties": {"response": response.cloned().unwrap_or(json!({"type": "string"}))},
                "required": ["response"],
            }]}),
            _ => call,
        }
    }

    /// The tools the choice allows.
    fn allowed(&self) -> impl Iterator<Item = &Tool> {
        self.tools.iter().filter(|t| match &self.choice {
            Choice::Named(n) => &t.name == n,
            _ => true,
        })
    }

    /// The schema of one call of a tool the choice allows, and how many tools
    /// that is.
    fn one_call(&self) -> (Value, usize) {
        // Llama 3.x names the arguments `parameters`.
        let key = match self.syntax {
            Syntax::Llama3 => "parameters",
            _ => "arguments",
        };
        let call = |t: &Tool| {
            let mut props = Map::new();
            props.insert("name".into(), json!({"type": "string", "const": t.name}));
            props.insert(key.into(), t.parameters.clone());
            json!({
                "type": "object",
                "properties": props,
                "required": ["name", key],
            })
        };
        let calls: Vec<Value> = self.allowed().map(call).collect();
        // At most one call per tool on offer: a small model otherwise repeats its
        // calls until max_tokens cuts the answer.
        let most = calls.len();
        let one = match <[Value; 1]>::try_from(calls) {
            Ok([c]) => c,
            Err(calls) => json!({"anyOf": calls}),
        };
        (one, most)
    }

    /// With a model's own syntax, the GBNF grammar that holds a `required` or
    /// named choice to calls in it (one, or with parallel calls at most one per
    /// tool): in `<tool_call>` tags (Hermes), in a `[TOOL_CALLS]` list (Mistral),
    /// or one bare call (Llama 3.x, which calls one tool at a time). `to_gbnf` turns
    /// a JSON schema into a grammar whose rule is `root`. `None` under `auto`,
    /// where the model writes freely, and for the generic format (its grammar is
    /// [`ToolMode::schema`]'s).
    pub fn own_grammar(
        &self,
        to_gbnf: impl Fn(&str) -> Result<String, ApiError>,
    ) -> Result<Option<String>, ApiError> {
        if self.choice == Choice::Auto || self.syntax == Syntax::Generic {
            return Ok(None);
        }
        if self.syntax == Syntax::MistralArgs {
            return self.args_grammar(to_gbnf).map(Some);
        }
        let (one, most) = self.one_call();
        let call = to_gbnf(&one.to_string())?;
        if self.syntax == Syntax::Llama3 {
            return Ok(Some(call));
        }
        // The call's grammar under another name, and the tags around it.
        let call: String = call
            .lines()
            .map(|l| match l.strip_prefix("root ::=") {
                Some(rest) => format!("call ::={rest}"),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let more = |sep: &str, item: &str| {
            if self.parallel && most > 1 {
                format!(" ({sep} {item}){{0,{}}}", most - 1)
            } else {
                String::new()
            }
        };
        if self.syntax == Syntax::Mistral {
            // The list may open with the `[TOOL_CALLS]` token (its text, to the
            // grammar) or without it.
            return Ok(Some(format!(
                "root ::= \"[TOOL_CALLS]\"? \"[\" call{} \"]\"\n{call}\n",
                more("\", \"", "call")
            )));
        }
        Ok(Some(format!(
            "root ::= tagged{}\ntagged ::= \"<tool_call>\\n\" call \"\\n</tool_call>\"\n{call}\n",
            more("\"\\n\"", "tagged")
        )))
    }

    /// [`Syntax::MistralArgs`]' grammar: each call `[TOOL_CALLS]name[ARGS]` and
    /// arguments that follow that tool's schema (each schema's grammar made apart,
    /// its rules renamed `t<k>-…`), with parallel calls at most as many calls as
    /// tools.
    fn args_grammar(
        &self,
        to_gbnf: impl Fn(&str) -> Result<String, ApiError>,
    ) -> Result<String, ApiError> {
        let (mut alternatives, mut rules) = (Vec::new(), String::new());
        for (k, t) in self.allowed().enumerate() {
            let prefix = format!("t{k}-");
            rules.push_str(&prefix_rules(&to_gbnf(&t.parameters.to_string())?, &prefix));
            if !rules.ends_with('\n') {
                rules.push('\n');
            }
            // A name is letters, digits, `_` and `-` (`tool` checks): a literal as it is.
            alternatives.push(format!("\"{}\" \"[ARGS]\" {prefix}root", t.name));
        }
        let more = match alternatives.len() {
            n if self.parallel && n > 1 => format!(" call{{0,{}}}", n - 1),
            _ => String::new(),
        };
        Ok(format!(
            "root ::= call{more}\ncall ::= \"[TOOL_CALLS]\" ({})\n{rules}",
            alternatives.join(" | ")
        ))
    }

    /// The system prompt's part that offers the tools and says how to answer.
    pub fn instructions(&self) -> String {
        if self.syntax == Syntax::Hermes {
            return self.hermes_instructions();
        }
        let list: Vec<Value> = self.tools.iter().map(Tool::function).collect();
        let shape = if self.parallel {
            r#"{"tool_calls": [{"name": "<tool name>", "arguments": {<its arguments>}}]}"#
        } else {
            r#"{"tool_call": {"name": "<tool name>", "arguments": {<its arguments>}}}"#
        };
        let how = match &self.choice {
            Choice::Auto => format!(
                "Respond in JSON format, either with a tool call (a request to call tools): {shape}\nor with `response`, your reply to the user's request: {{\"response\": \"<your reply>\"}}"
            ),
            Choice::Required => {
                format!("Respond in JSON format with a call of one of these tools: {shape}")
            }
            Choice::Named(n) => {
                format!("Respond in JSON format with a call of the tool `{n}`: {shape}")
            }
        };
        format!(
            "You can call the following tools to satisfy the user's request:\n{}\n\n{how}",
            Value::Array(list)
        )
    }
}

impl ToolMode {
    /// The tools as Qwen2.5's and Hermes' templates offer them.
    fn hermes_instructions(&self) -> String {
        let mut out = String::from(
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
             You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
        );
        for t in &self.tools {
            out.push('\n');
            out.push_str(&json!({"type": "function", "function": t.function()}).to_string());
        }
        out.push_str(
            "\n</tools>\n\nFor each function call, return a json object with function name and \
             arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n\
             {\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>",
        );
        match &self.choice {
            Choice::Auto => {}
            Choice::Required => out.push_str("\n\nCall at least one of these functions."),
            Choice::Named(n) => out.push_str(&format!("\n\nCall the function `{n}`.")),
        }
        out
    }
}

/// The chat's messages as `(role, text)` for the chat template. A message that
/// holds tool calls becomes the JSON the model is asked to write, and a tool's
/// result a user turn with a `tool_response` (templates without tools know no
/// `tool` role), so a conversation with calls reads back to the model as it went.
/// With `mode`, the tools' instructions join the system prompt (a first one is
/// added when there is none) and earlier replies are shown as `response`s.
pub fn messages(list: &[ChatMessage], mode: Option<&ToolMode>) -> Vec<(String, String)> {
    if let Some(m) = mode.filter(|m| m.syntax == Syntax::Hermes) {
        return hermes_messages(list, m);
    }
    let parallel = mode.is_none_or(|m| m.parallel);
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|m| {
            let text = m.text();
            match m.role.as_str() {
                // `developer` is OpenAI's newer name for `system`; templates know `system`.
                "developer" => ("system".to_owned(), text),
                "assistant" => {
                    let calls = m
                        .extra
                        .get("tool_calls")
                        .and_then(Value::as_array)
                        .filter(|c| !c.is_empty());
                    match calls {
                        Some(calls) => ("assistant".to_owned(), calls_json(calls, parallel)),
                        None if mode.is_some() => (
                            "assistant".to_owned(),
                            json!({ "response": text }).to_string(),
                        ),
                        None => ("assistant".to_owned(), text),
                    }
                }
                "tool" => {
                    let mut r = Map::new();
                    for key in ["name", "tool_call_id"] {
                        if let Some(v) = m.extra.get(key) {
                            r.insert(key.into(), v.clone());
                        }
                    }
                    r.insert("content".into(), Value::String(text));
                    ("user".to_owned(), json!({ "tool_response": r }).to_string())
                }
                role => (role.to_owned(), text),
            }
        })
        .collect();
    if let Some(mode) = mode {
        with_instructions(&mut out, mode);
    }
    out
}

/// The tools' instructions at the end of the first system message (one is added
/// first when there is none).
fn with_instructions(out: &mut Vec<(String, String)>, mode: &ToolMode) {
    let add = mode.instructions();
    match out.first_mut() {
        Some((role, text)) if role == "system" => {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&add);
        }
        _ => out.insert(0, ("system".to_owned(), add)),
    }
}

/// [`messages`] for [`Syntax::Hermes`]: calls in `<tool_call>` tags, results in
/// a user turn's `<tool_response>` tags (as Qwen's template writes them), replies
/// as they were.
fn hermes_messages(list: &[ChatMessage], mode: &ToolMode) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|m| {
            let text = m.text();
            match m.role.as_str() {
                "developer" => ("system".to_owned(), text),
                "assistant" => {
                    let calls = m.extra.get("tool_calls").and_then(Value::as_array);
                    let mut said = text;
                    for c in calls.into_iter().flatten() {
                        if !said.is_empty() {
                            said.push('\n');
                        }
                        said.push_str(&format!("<tool_call>\n{}\n</tool_call>", call_json(c)));
                    }
                    ("assistant".to_owned(), said)
                }
                "tool" => (
                    "user".to_owned(),
                    format!("<tool_response>\n{text}\n</tool_response>"),
                ),
                role => (role.to_owned(), text),
            }
        })
        .collect();
    with_instructions(&mut out, mode);
    out
}

/// The messages and tools as a template's Jinja source reads them, in OpenAI's
/// shape as Hugging Face's `apply_chat_template` takes them: `developer` as
/// `system`, each call's arguments as an object, and for Mistral every call id as 9
/// letters and digits (its template refuses others; the same id always becomes
/// the same 9).
pub fn jinja_input(list: &[ChatMessage], mode: &ToolMode) -> (Value, Value) {
    let id = |v: Option<&Value>| -> Value {
        match v.and_then(Value::as_str) {
            Some(id)
                if mode.syntax.short_ids()
                    && !(id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric())) =>
            {
                use sha2::Digest;
                Value::String(short_id(&sha2::Sha256::digest(id.as_bytes())))
            }
            Some(id) => Value::String(id.to_owned()),
            None => Value::Null,
        }
    };
    let messages = list
        .iter()
        .map(|m| {
            let mut out = Map::new();
            let role = match m.role.as_str() {
                "developer" => "system",
                r => r,
            };
            out.insert("role".into(), Value::String(role.to_owned()));
            out.insert("content".into(), Value::String(m.text()));
            if let Some(calls) = m.extra.get("tool_calls").and_then(Value::as_array) {
                let calls = calls
                    .iter()
                    .map(|c| {
                        let f = call_json(c);
                        json!({
                            "id": id(c.get("id")),
                            "type": "function",
                            "function": {"name": f["name"], "arguments": f["arguments"]},
                        })
                    })
                    .collect();
                out.insert("tool_calls".into(), Value::Array(calls));
            }
            if let Some(v) = m.extra.get("tool_call_id") {
                out.insert("tool_call_id".into(), id(Some(v)));
            }
            if let Some(v) = m.extra.get("name") {
                out.insert("name".into(), v.clone());
            }
            Value::Object(out)
        })
        .collect();
    let tools = mode
        .tools
        .iter()
        .map(|t| json!({"type": "function", "function": t.function()}))
        .collect();
    (Value::Array(messages), Value::Array(tools))
}

/// 9 letters and digits made of `bytes` (a call id as Mistral's template takes it).
fn short_id(bytes: &[u8]) -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    bytes
        .iter()
        .take(9)
        .map(|b| ALNUM[usize::from(*b) % ALNUM.len()] as char)
        .collect()
}

/// One of OpenAI's `tool_calls` (arguments as JSON text) as `{"name", "arguments"}`.
fn call_json(c: &Value) -> Value {
    let name = c.pointer("/function/name").cloned().unwrap_or(Value::Null);
    let args = c
        .pointer("/function/arguments")
        .map(|a| match a {
            Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| a.clone()),
            other => other.clone(),
        })
        .unwrap_or_else(|| json!({}));
    json!({"name": name, "arguments": args})
}

/// OpenAI's `tool_calls` (arguments as JSON text) as the generic format's JSON.
fn calls_json(calls: &[Value], parallel: bool) -> String {
    match calls {
        [c] if !parallel => json!({ "tool_call": call_json(c) }).to_string(),
        _ => json!({ "tool_calls": calls.iter().map(call_json).collect::<Vec<_>>() }).to_string(),
    }
}

/// Reads the model's JSON as it streams and says it as the router's events:
/// a `response` string's characters as text, each call's name (with a fresh id)
/// and then its arguments' JSON as it grows. The whole text is read again from the
/// start on each piece (answers are short next to the model's speed), and only
/// what was not yet said is sent.
#[derive(Debug, Default)]
pub struct Reader {
    syntax: Syntax,
    buf: String,
    /// How much of the reply's text was sent.
    said_text: usize,
    /// For each call: its id, and how much of its arguments was sent.
    said_calls: Vec<(String, usize)>,
}

/// What the JSON read so far holds.
#[derive(Debug, Default, PartialEq)]
struct Partial {
    text: String,
    /// `(name, arguments so far)`, the name once whole.
    calls: Vec<(String, String)>,
}

impl Reader {
    pub fn new(syntax: Syntax) -> Self {
        Reader {
            syntax,
            ..Self::default()
        }
    }

    /// Whether the answer made at least one call.
    pub fn called(&self) -> bool {
        !self.said_calls.is_empty()
    }

    /// Takes more of the model's text; returns the events it completes.
    pub fn push(&mut self, index: u32, piece: &str) -> Vec<Out> {
        self.buf.push_str(piece);
        self.said(index, false)
    }

    /// The answer ended: what was held back in case it began a call (and did
    /// not) is text after all.
    pub fn finish(&mut self, index: u32) -> Vec<Out> {
        self.said(index, true)
    }

    /// The events of what the text says now, less what was sent.
    fn said(&mut self, index: u32, done: bool) -> Vec<Out> {
        let p = match self.syntax {
            Syntax::Generic => parse(&self.buf),
            Syntax::Hermes => parse_hermes(&self.buf, done),
            Syntax::Llama3 => parse_json_calls(&self.buf, done, Shape::LLAMA3),
            Syntax::Mistral => parse_json_calls(&self.buf, done, Shape::MISTRAL),
            Syntax::MistralArgs => parse_mistral_args(&self.buf, done),
        };
        let mut out = Vec::new();
        if p.text.len() > self.said_text {
            out.push(Out::Text {
                index,
                text: p.text[self.said_text..].to_owned(),
            });
            self.said_text = p.text.len();
        }
        for (k, (name, args)) in p.calls.iter().enumerate() {
            if k == self.said_calls.len() {
                let id = if self.syntax.short_ids() {
                    short_id(uuid::Uuid::new_v4().as_bytes())
                } else {
                    format!("call_{}", uuid::Uuid::new_v4().simple())
                };
                out.push(Out::ToolCall {
                    index,
                    call: ToolCallDelta {
                        index: k as u32,
                        id: Some(id.clone()),
                        name: Some(name.clone()),
                        arguments: String::new(),
                    },
                });
                self.said_calls.push((id, 0));
            }
            let Some((_, said)) = self.said_calls.get_mut(k) else {
                continue;
            };
            if args.len() > *said {
                out.push(Out::ToolCall {
                    index,
                    call: ToolCallDelta {
                        index: k as u32,
                        id: None,
                        name: None,
                        arguments: args[*said..].to_owned(),
                    },
                });
                *said = args.len();
            }
        }
        out
    }
}

/// A cursor over the JSON text; every reader returns `None` at the end of the
/// text so far (more may come) or on what the grammar does not allow.
struct Cur<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cur<'_> {
    fn ws(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.s.get(self.at) == Some(&b)).then(|| self.at += 1)
    }

    /// A whole JSON string, decoded.
    fn string(&mut self) -> Option<String> {
        self.ws();
        let start = self.at;
        let (text, done) = self.string_part()?;
        if done {
            Some(text)
        } else {
            self.at = start;
            None
        }
    }

    /// A JSON string as far as it goes: its decoded text (an escape cut in half
    /// left out) and whether it closed.
    fn string_part(&mut self) -> Option<(String, bool)> {
        if self.s.get(self.at) != Some(&b'"') {
            return None;
        }
        let mut i = self.at + 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            match self.s.get(i) {
                None => break,
                Some(b'"') => {
                    self.at = i + 1;
                    return Some((String::from_utf8_lossy(&out).into_owned(), true));
                }
                Some(b'\\') => {
                    let Some(&e) = self.s.get(i + 1) else { break };
                    if e == b'u' {
                        let Some(hex) = self.s.get(i + 2..i + 6) else {
                            break;
                        };
                        let code = std::str::from_utf8(hex)
                            .ok()
                            .and_then(|h| u32::from_str_radix(h, 16).ok())?;
                        if (0xD800..0xDC00).contains(&code) {
                            // A surrogate pair: wait for its second half.
                            let Some(low) = self.s.get(i + 8..i + 12) else {
                                break;
                            };
                            let low = std::str::from_utf8(low)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())?;
                            let c = 0x10000 + ((code - 0xD800) << 10) + (low.wrapping_sub(0xDC00));
                            let mut b = [0; 4];
                            out.extend_from_slice(
                                char::from_u32(c)
                                    .unwrap_or('\u{fffd}')
                                    .encode_utf8(&mut b)
                                    .as_bytes(),
                            );
                            i += 12;
                        } else {
                            let mut b = [0; 4];
                            out.extend_from_slice(
                                char::from_u32(code)
                                    .unwrap_or('\u{fffd}')
                                    .encode_utf8(&mut b)
                                    .as_bytes(),
                            );
                            i += 6;
                        }
                        continue;
                    }
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        other => other,
                    });
                    i += 2;
                }
                Some(&b) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        // Unclosed: keep only whole characters.
        let text = match std::str::from_utf8(&out) {
            Ok(t) => t.to_owned(),
            Err(e) => String::from_utf8_lossy(&out[..e.valid_up_to()]).into_owned(),
        };
        self.at = self.s.len();
        Some((text, false))
    }

    /// Any JSON value as far as it goes: its raw text, and whether it ended.
    fn raw_value(&mut self) -> Option<(String, bool)> {
        self.ws();
        let start = self.at;
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        let mut end = None;
        let mut i = start;
        while let Some(&b) = self.s.get(i) {
            i += 1;
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => {
                        in_string = false;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                // A number, `true`... ends where what follows it starts.
                b'}' | b']' | b',' if depth == 0 => {
                    end = Some(i - 1);
                    break;
                }
                b if depth == 0 && b.is_ascii_whitespace() && i - 1 > start => {
                    end = Some(i - 1);
                    break;
                }
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let stop = end.unwrap_or(self.s.len());
        let text = std::str::from_utf8(&self.s[start..stop])
            .ok()?
            .trim_end()
            .to_owned();
        self.at = stop;
        Some((text, end.is_some()))
    }

    /// `{"name": "…", "arguments": …}` as far as it goes.
    fn call(&mut self, calls: &mut Vec<(String, String)>) -> Option<bool> {
        self.call_as(calls, "arguments")
    }

    /// A call whose arguments are under `key` (Llama 3.x says `parameters`), with
    /// any other keys after them (Mistral's `id`) read past. `Some(false)` while
    /// the arguments are still coming.
    fn call_as(&mut self, calls: &mut Vec<(String, String)>, key: &str) -> Option<bool> {
        self.eat(b'{')?;
        if self.string()? != "name" {
            return None;
        }
        self.eat(b':')?;
        let name = self.string()?;
        self.eat(b',')?;
        if self.string()? != key {
            return None;
        }
        self.eat(b':')?;
        calls.push((name, String::new()));
        let (args, done) = self.raw_value()?;
        if let Some(last) = calls.last_mut() {
            last.1 = args;
        }
        if !done {
            return Some(false);
        }
        while self.eat(b',').is_some() {
            self.string()?;
            self.eat(b':')?;
            if !self.raw_value()?.1 {
                return None;
            }
        }
        self.eat(b'}')?;
        Some(true)
    }
}

/// What the answer's JSON says so far.
fn parse(text: &str) -> Partial {
    let mut p = Partial::default();
    let mut c = Cur {
        s: text.as_bytes(),
        at: 0,
    };
    let _ = (|| -> Option<()> {
        c.eat(b'{')?;
        let key = c.string()?;
        c.eat(b':')?;
        match key.as_str() {
            "response" => {
                c.ws();
                if c.s.get(c.at) == Some(&b'"') {
                    p.text = c.string_part()?.0;
                } else {
                    // A reply under a response_format schema: its JSON as it comes.
                    p.text = c.raw_value()?.0;
                }
            }
            "tool_call" => {
                c.call(&mut p.calls)?;
            }
            "tool_calls" => {
                c.eat(b'[')?;
                while c.call(&mut p.calls)? {
                    c.eat(b',')?;
                }
            }
            _ => {}
        }
        Some(())
    })();
    p
}

/// How a family writes its calls as bare JSON at the start of its answer.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// The token that may open the calls, when the model spells it as text.
    opener: &'static str,
    /// The calls' JSON starts so (whitespace aside), up to the name's quote.
    start: &'static str,
    /// A list of calls, or one.
    list: bool,
    /// The key of the arguments.
    key: &'static str,
}

impl Shape {
    const LLAMA3: Shape = Shape {
        opener: "<|python_tag|>",
        start: "{\"name\":\"",
        list: false,
        key: "parameters",
    };
    const MISTRAL: Shape = Shape {
        opener: "[TOOL_CALLS]",
        start: "[{\"name\":\"",
        list: true,
        key: "arguments",
    };
}

/// What a Llama 3.x or Mistral answer says so far: calls, when it opens as
/// `shape`'s JSON does (`{"name": "…` or `[{"name": "…`), else a reply. While
/// the opening could still go either way, nothing is said; once `done`, an answer
/// that made no call is all text.
fn parse_json_calls(text: &str, done: bool, shape: Shape) -> Partial {
    let mut p = Partial::default();
    let body = text.trim_start();
    let body = match body.strip_prefix(shape.opener) {
        Some(rest) => rest,
        None if !done && shape.opener.starts_with(body) => return p,
        None => body,
    };
    // Match the opening, byte by byte, whitespace between its tokens aside.
    let mut want = shape.start.bytes().peekable();
    let mut in_key = false;
    for b in body.bytes() {
        let Some(&w) = want.peek() else { break };
        if b.is_ascii_whitespace() && !in_key {
            continue;
        }
        if b != w {
            p.text = text.to_owned();
            return p;
        }
        if b == b'"' {
            in_key = !in_key;
        }
        want.next();
    }
    if want.peek().is_some() {
        if done {
            p.text = text.to_owned();
        }
        return p;
    }
    let mut c = Cur {
        s: body.as_bytes(),
        at: 0,
    };
    if shape.list {
        if c.eat(b'[').is_some() {
            while c.call_as(&mut p.calls, shape.key) == Some(true) && c.eat(b',').is_some() {}
        }
    } else {
        let _ = c.call_as(&mut p.calls, shape.key);
    }
    if done && p.calls.is_empty() {
        p.text = text.to_owned();
    }
    p
}

/// The text before the first `open` tag, as a [`Partial`]'s text, and where the
/// tag starts. While there is none, the text is what is surely no tag: all of it
/// once `done`, else all but an end that may be the tag's beginning.
fn text_before(text: &str, open: &str, done: bool) -> (Partial, Option<usize>) {
    let (said, first) = match text.find(open) {
        Some(at) => (at, Some(at)),
        None => {
            let hold = (1..open.len())
                .rev()
                .find(|&n| !done && text.ends_with(&open[..n]))
                .unwrap_or(0);
            (text.len() - hold, None)
        }
    };
    let p = Partial {
        text: text[..said].to_owned(),
        ..Partial::default()
    };
    (p, first)
}

/// What a [`Syntax::Hermes`] answer says so far: its text up to the first
/// `<tool_call>` (less what may be the start of one, until `done`), then each
/// call's JSON.
fn parse_hermes(text: &str, done: bool) -> Partial {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let (mut p, first) = text_before(text, OPEN, done);
    let Some(mut at) = first else { return p };
    while let Some(rest) = text.get(at..).and_then(|r| r.strip_prefix(OPEN)) {
        let mut c = Cur {
            s: rest.as_bytes(),
            at: 0,
        };
        c.ws();
        if c.call(&mut p.calls) != Some(true) {
            break;
        }
        c.ws();
        let after = &rest[c.at..];
        if !after.starts_with(CLOSE) {
            break;
        }
        let next = &after[CLOSE.len()..];
        match next.find(OPEN) {
            Some(k) => at = text.len() - next.len() + k,
            None => break,
        }
    }
    p
}

/// What a [`Syntax::MistralArgs`] answer says so far: its text up to the first
/// `[TOOL_CALLS]` (less what may be the start of one, until `done`), then its
/// calls, each `[TOOL_CALLS]name[ARGS]{…}` or `[TOOL_CALLS]name[CALL_ID]id[ARGS]{…}`
/// (the model's own id is not kept: Hearth gives each call its own).
fn parse_mistral_args(text: &str, done: bool) -> Partial {
    const OPEN: &str = "[TOOL_CALLS]";
    const ARGS: &str = "[ARGS]";
    let (mut p, first) = text_before(text, OPEN, done);
    let Some(first) = first else { return p };
    let mut rest = &text[first..];
    while let Some(call) = rest.strip_prefix(OPEN) {
        let Some(at) = call.find(ARGS) else { break };
        let name = call[..at]
            .split("[CALL_ID]")
            .next()
            .unwrap_or_default()
            .trim();
        if name.is_empty() {
            break;
        }
        let after = &call[at + ARGS.len()..];
        let mut c = Cur {
            s: after.as_bytes(),
            at: 0,
        };
        let Some((args, whole)) = c.raw_value() else {
            break;
        };
        p.calls.push((name.to_owned(), args));
        if !whole {
            break;
        }
        rest = after[c.at..].trim_start();
    }
    p
}

/// `grammar` (GBNF) with each rule it defines renamed `prefix` + its name, where
/// defined and where used, so that grammars made apart can share one file.
/// String literals, character classes and comments are left as they are.
fn prefix_rules(grammar: &str, prefix: &str) -> String {
    let defined: std::collections::HashSet<&str> = grammar
        .lines()
        .filter_map(|l| l.split_once("::="))
        .map(|(name, _)| name.trim())
        .collect();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let s = grammar.as_bytes();
    let mut out = String::with_capacity(grammar.len() * 2);
    let mut i = 0;
    while i < s.len() {
        let start = i;
        match s[i] {
            // A literal or a class runs to its unescaped closing mark.
            open @ (b'"' | b'[') => {
                let close = if open == b'"' { b'"' } else { b']' };
                i += 1;
                while i < s.len() && s[i] != close {
                    i += if s[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(s.len());
            }
            b'#' => {
                while i < s.len() && s[i] != b'\n' {
                    i += 1;
                }
            }
            b if word(b) => {
                while i < s.len() && word(s[i]) {
                    i += 1;
                }
                if defined.contains(&grammar[start..i]) {
                    out.push_str(prefix);
                }
            }
            _ => i += grammar[i..].chars().next().map_or(1, char::len_utf8),
        }
        out.push_str(&grammar[start..i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(pieces: &[&str]) -> (String, Vec<ToolCallDelta>) {
        said_in(Syntax::Generic, pieces)
    }

    /// What a reader of `syntax` says of the pieces, then of the answer's end.
    fn said_in(syntax: Syntax, pieces: &[&str]) -> (String, Vec<ToolCallDelta>) {
        let mut r = Reader::new(syntax);
        let mut text = String::new();
        let mut calls: Vec<ToolCallDelta> = Vec::new();
        let mut events: Vec<Vec<Out>> = pieces.iter().map(|p| r.push(0, p)).collect();
        events.push(r.finish(0));
        for list in events {
            for e in list {
                match e {
                    Out::Text { text: t, .. } => text.push_str(&t),
                    Out::ToolCall { call, .. } => match calls.get_mut(call.index as usize) {
                        Some(c) => c.arguments.push_str(&call.arguments),
                        None => calls.push(call),
                    },
                    _ => {}
                }
            }
        }
        (text, calls)
    }

    fn chars(s: &str) -> Vec<String> {
        s.chars().map(String::from).collect()
    }

    #[test]
    fn hermes_calls_are_read_from_their_tags_as_they_stream() {
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        let whole = parse_hermes(text, false);
        assert_eq!(whole.text, "Let me look.\n");
        assert_eq!(
            whole.calls,
            vec![
                ("get_weather".to_owned(), "{\"city\": \"Oslo\"}".to_owned()),
                ("get_time".to_owned(), "{}".to_owned())
            ]
        );
        // Piece by piece: the same, and no piece of a tag is ever said as text.
        let mut r = Reader::new(Syntax::Hermes);
        let (mut said, mut args) = (String::new(), String::new());
        let mut names = Vec::new();
        for ch in text.chars() {
            for e in r.push(0, &ch.to_string()) {
                match e {
                    Out::Text { text, .. } => said.push_str(&text),
                    Out::ToolCall { call, .. } => {
                        names.extend(call.name);
                        args.push_str(&call.arguments);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(said, "Let me look.\n");
        assert_eq!(names, ["get_weather", "get_time"]);
        assert_eq!(args, "{\"city\": \"Oslo\"}{}");
        // A reply without calls is all text; a lone `<` is held until it is not a tag.
        assert_eq!(parse_hermes("a < b", false).text, "a < b");
        assert_eq!(parse_hermes("a <tool_", false).text, "a ");
    }

    #[test]
    fn hermes_requests_offer_the_tools_in_tags_and_say_calls_and_results_in_them() {
        let m = ToolMode {
            syntax: Syntax::Hermes,
            ..mode(
                json!({"tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object"}}}], "tool_choice": "required"}),
            )
            .unwrap()
            .unwrap()
        };
        let r = request(json!({"messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "7 C"}
        ]}));
        let said = messages(&r.messages, Some(&m));
        assert_eq!(said[0].0, "system");
        assert!(
            said[0]
                .1
                .contains("<tools>\n{\"type\":\"function\",\"function\":{\"name\":\"get_weather\""),
            "{}",
            said[0].1
        );
        assert!(
            said[0].1.ends_with("Call at least one of these functions."),
            "{}",
            said[0].1
        );
        assert_eq!(
            said[2],
            ("assistant".to_owned(), "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}\n</tool_call>".to_owned())
        );
        assert_eq!(
            said[3],
            (
                "user".to_owned(),
                "<tool_response>\n7 C\n</tool_response>".to_owned()
            )
        );
        // The grammar: the call's rules under `call`, in tags, one per tool at most.
        let g = m
            .own_grammar(|_| Ok("root ::= \"{\" x \"}\"\nx ::= [a-z]".to_owned()))
            .unwrap()
            .unwrap();
        assert_eq!(
            g,
            "root ::= tagged\ntagged ::= \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall ::= \"{\" x \"}\"\nx ::= [a-z]\n"
        );
        let auto = ToolMode {
            choice: Choice::Auto,
            ..m
        };
        assert_eq!(auto.own_grammar(|_| unreachable!()).unwrap(), None);
        assert_eq!(
            Syntax::of_template(Some("...<tool_call>...")),
            Syntax::Hermes
        );
        assert_eq!(Syntax::of_template(Some("<|im_start|>")), Syntax::Generic);
        assert_eq!(Syntax::of_template(None), Syntax::Generic);
    }

    const LLAMA32: &str = include_str!("../tests/templates/meta-llama-Llama-3.2-3B-Instruct.jinja");
    const NEMO: &str =
        include_str!("../tests/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja");

    fn names(calls: &[ToolCallDelta]) -> Vec<&str> {
        calls.iter().filter_map(|c| c.name.as_deref()).collect()
    }

    #[test]
    fn llama3_calls_are_read_from_bare_json_and_replies_are_text() {
        let call = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}";
        let (text, calls) = said_in(
            Syntax::Llama3,
            &chars(call).iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(text, "");
        assert_eq!(names(&calls), ["get_weather"]);
        assert_eq!(calls[0].arguments, "{\"city\": \"Oslo\"}");
        assert!(
            calls[0]
                .id
                .as_deref()
                .is_some_and(|id| id.starts_with("call_"))
        );
        // `<|python_tag|>` spelled as text, and whitespace, go before the JSON.
        let (text, calls) = said_in(
            Syntax::Llama3,
            &[
                "<|python",
                "_tag|>\n{ \"name\" :\"f\",",
                "\"parameters\":{}}",
            ],
        );
        assert_eq!((text.as_str(), names(&calls)), ("", vec!["f"]));
        // A reply streams as it comes once it cannot be a call.
        let mut r = Reader::new(Syntax::Llama3);
        assert!(matches!(&r.push(0, "Hi")[..], [Out::Text { text, .. }] if text == "Hi"));
        // JSON that is not a call is held, then said whole at the end.
        let mut r = Reader::new(Syntax::Llama3);
        assert!(r.push(0, "{\"nam").is_empty());
        assert!(
            matches!(&r.push(0, "es\": 1}")[..], [Out::Text { text, .. }] if text == "{\"names\": 1}")
        );
        let (text, calls) = said_in(Syntax::Llama3, &["{\"na"]);
        assert_eq!((text.as_str(), calls.len()), ("{\"na", 0));
        assert_eq!(said_in(Syntax::Llama3, &[" "]).0, " ");
    }

    /// What a reader of `syntax` says of `text` given one character at a time.
    fn said_by_char(syntax: Syntax, text: &str) -> (String, Vec<ToolCallDelta>) {
        let pieces = chars(text);
        said_in(
            syntax,
            &pieces.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    }

    /// The calls are `get_weather` for Oslo then `get_time`, with Mistral's ids.
    fn assert_weather_and_time_with_short_ids(calls: &[ToolCallDelta]) {
        assert_eq!(names(calls), ["get_weather", "get_time"]);
        assert_eq!(calls[0].arguments, "{\"city\": \"Oslo\"}");
        assert_eq!(calls[1].arguments, "{}");
        for c in calls {
            let id = c.id.as_deref().unwrap_or_default();
            assert!(
                id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{id}"
            );
        }
    }

    #[test]
    fn mistral_calls_are_read_from_their_list_with_short_ids() {
        let list = "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}, \"id\": \"abc123DEF\"}, {\"name\": \"get_time\", \"arguments\": {}}]";
        let (text, calls) = said_by_char(Syntax::Mistral, list);
        assert_eq!(text, "");
        assert_weather_and_time_with_short_ids(&calls);
        // The `[TOOL_CALLS]` token renders as no text: the bare list is calls too.
        let (_, calls) = said_in(
            Syntax::Mistral,
            &[" [{\"name\": \"f\", \"arguments\": {\"a\": [1]}}]"],
        );
        assert_eq!(
            (names(&calls), calls[0].arguments.as_str()),
            (vec!["f"], "{\"a\": [1]}")
        );
        // Brackets that open a reply are text.
        assert_eq!(
            said_in(Syntax::Mistral, &["[1] ", "is a note"]),
            ("[1] is a note".to_owned(), vec![])
        );
        assert_eq!(said_in(Syntax::Mistral, &["[TOOL"]).0, "[TOOL");
    }

    #[test]
    fn mistral_args_calls_are_read_after_any_text_with_or_without_call_ids() {
        // Tokenizer v13 (`name[ARGS]{…}`) then v11 (`name[CALL_ID]id[ARGS]{…}`),
        // after a few words, one character at a time.
        let text = "Checking. [TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"} [TOOL_CALLS]get_time[CALL_ID]a1b2c3d4e[ARGS]{}";
        let (said, calls) = said_by_char(Syntax::MistralArgs, text);
        assert_eq!(said, "Checking. ");
        assert_weather_and_time_with_short_ids(&calls);
        // While streaming, a name is said only whole and no piece of a tag is text.
        let p = parse_mistral_args("Hi [TOOL_CA", false);
        assert_eq!((p.text.as_str(), p.calls.len()), ("Hi ", 0));
        let p = parse_mistral_args("Hi [TOOL_CALLS]get_wea", false);
        assert_eq!((p.text.as_str(), p.calls.len()), ("Hi ", 0));
        let p = parse_mistral_args("[TOOL_CALLS]f[ARGS]{\"a\": [1, ", false);
        assert_eq!(p.calls, vec![("f".to_owned(), "{\"a\": [1,".to_owned())]);
        // A reply without calls is all text, brackets and an unfinished tag too.
        assert_eq!(
            said_in(Syntax::MistralArgs, &["[1] is ", "a note [TOOL"]),
            ("[1] is a note [TOOL".to_owned(), vec![])
        );
    }

    #[test]
    fn mistral_args_grammars_join_each_tools_own_schema_grammar() {
        let m = ToolMode {
            syntax: Syntax::MistralArgs,
            ..mode(json!({"tools": [
                {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "b"}}], "tool_choice": "required"}))
            .unwrap()
            .unwrap()
        };
        // A stand-in converter with the shapes llama.cpp's has: shared rule names,
        // names in literals and classes, a comment and a repetition.
        let gbnf = |_: &str| {
            Ok("root ::= \"{\" space obj \"}\" # root obj\nobj ::= [root] \"space\" space{1,2}\nspace ::= \" \"?\n".to_owned())
        };
        let g = m.own_grammar(gbnf).unwrap().unwrap();
        assert_eq!(
            g,
            "root ::= call call{0,1}\ncall ::= \"[TOOL_CALLS]\" (\"a\" \"[ARGS]\" t0-root | \"b\" \"[ARGS]\" t1-root)\n\
             t0-root ::= \"{\" t0-space t0-obj \"}\" # root obj\nt0-obj ::= [root] \"space\" t0-space{1,2}\nt0-space ::= \" \"?\n\
             t1-root ::= \"{\" t1-space t1-obj \"}\" # root obj\nt1-obj ::= [root] \"space\" t1-space{1,2}\nt1-space ::= \" \"?\n"
        );
        // A named choice: that tool only, once.
        let named = ToolMode {
            choice: Choice::Named("a".into()),
            ..m
        };
        let g = named.own_grammar(gbnf).unwrap().unwrap();
        assert!(
            g.starts_with("root ::= call\ncall ::= \"[TOOL_CALLS]\" (\"a\" \"[ARGS]\" t0-root)\n"),
            "{g}"
        );
        // With llama.cpp's own converter, the joined grammar keeps every rule it uses.
        let real = |schema: &str| {
            llama_cpp_2::json_schema_to_grammar(schema)
                .map_err(|e| ApiError::invalid_param("tools", e.to_string()))
        };
        let g = weather_tool(Syntax::MistralArgs);
        let g = ToolMode {
            choice: Choice::Required,
            ..g
        }
        .own_grammar(real)
        .unwrap()
        .unwrap();
        let defined: std::collections::HashSet<&str> = g
            .lines()
            .filter_map(|l| l.split_once(" ::= ").map(|(n, _)| n))
            .collect();
        assert!(
            defined.contains("t0-root") && !defined.contains("space"),
            "{g}"
        );
    }

    #[test]
    fn own_grammars_hold_required_calls_in_each_syntax() {
        let m = mode(json!({"tools": [
            {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "b"}}], "tool_choice": "required"}))
        .unwrap()
        .unwrap();
        let echo = |schema: &str| Ok(format!("root ::= {schema}"));
        let mistral = ToolMode {
            syntax: Syntax::Mistral,
            ..m.clone()
        };
        let g = mistral.own_grammar(echo).unwrap().unwrap();
        assert!(
            g.starts_with(
                "root ::= \"[TOOL_CALLS]\"? \"[\" call (\", \" call){0,1} \"]\"\ncall ::= {"
            ),
            "{g}"
        );
        assert!(g.contains("\"arguments\""), "{g}");
        // Llama 3.x calls one tool at a time, its arguments named `parameters`.
        let llama = ToolMode {
            syntax: Syntax::Llama3,
            ..m.clone()
        };
        let g = llama.own_grammar(echo).unwrap().unwrap();
        assert!(g.starts_with("root ::= {\"anyOf\""), "{g}");
        assert!(
            g.contains("\"parameters\"") && !g.contains("\"arguments\""),
            "{g}"
        );
        let generic = ToolMode {
            syntax: Syntax::Generic,
            ..m
        };
        assert_eq!(generic.own_grammar(echo).unwrap(), None);
    }

    /// A conversation with a call and its result, as OpenAI clients send it.
    fn with_a_call() -> ChatCompletionRequest {
        request(json!({"messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0a1b2c3d4e5f", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_0a1b2c3d4e5f", "content": "7 C"},
            {"role": "assistant", "content": "It is 7 C."},
            {"role": "user", "content": "And in Rome?"}
        ]}))
    }

    fn weather_tool(syntax: Syntax) -> ToolMode {
        ToolMode {
            syntax,
            ..mode(
                json!({"tools": [{"type": "function", "function": {"name": "get_weather",
                "description": "The weather now", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}}}}}]}),
            )
            .unwrap()
            .unwrap()
        }
    }

    /// [`with_a_call`] with the weather tool as `syntax`'s templates read them, and
    /// the call's id as they were given it.
    fn with_a_call_for(syntax: Syntax) -> (ToolMode, Value, Value, String) {
        let m = weather_tool(syntax);
        let (messages, tools) = jinja_input(&with_a_call().messages, &m);
        let id = messages[2]["tool_calls"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        (m, messages, tools, id)
    }

    #[test]
    fn llama3_templates_render_their_own_tool_words() {
        assert_eq!(Syntax::of_template(Some(LLAMA32)), Syntax::Llama3);
        let m = weather_tool(Syntax::Llama3);
        let (messages, tools) = jinja_input(&with_a_call().messages, &m);
        let t = crate::jinja::ChatTemplate::new(LLAMA32).unwrap();
        let out = t
            .render(&messages, Some(&tools), "<|begin_of_text|>", "<|eot_id|>")
            .unwrap();
        assert!(out.starts_with("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: "), "{out}");
        assert!(out.contains("\n\nBe brief.<|eot_id|>"), "{out}");
        // The tools in the first user turn, as Python's json.dumps(indent=4) writes them.
        assert!(out.contains("Do not use variables.\n\n{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n        \"description\": \"The weather now\","), "{out}");
        assert!(out.contains("Weather in Oslo?<|eot_id|>"), "{out}");
        assert!(out.contains("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}<|eot_id|>"), "{out}");
        assert!(
            out.contains("<|start_header_id|>ipython<|end_header_id|>\n\n\"7 C\"<|eot_id|>"),
            "{out}"
        );
        assert!(
            out.ends_with(
                "And in Rome?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn mistral_templates_render_their_own_tool_words_with_short_ids() {
        assert_eq!(Syntax::of_template(Some(NEMO)), Syntax::Mistral);
        let (m, messages, tools, id) = with_a_call_for(Syntax::Mistral);
        assert_eq!(id.len(), 9);
        assert_eq!(
            messages[3]["tool_call_id"],
            json!(id),
            "a call and its result keep one id"
        );
        let t = crate::jinja::ChatTemplate::new(NEMO).unwrap();
        let out = t.render(&messages, Some(&tools), "<s>", "</s>").unwrap();
        let want = format!(
            "<s>[INST]Weather in Oslo?[/INST][TOOL_CALLS][{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"Oslo\"}}, \"id\": \"{id}\"}}]</s>[TOOL_RESULTS]{{\"content\": 7 C, \"call_id\": \"{id}\"}}[/TOOL_RESULTS]It is 7 C.</s>[AVAILABLE_TOOLS][{{\"type\": \"function\", \"function\": {{\"name\": \"get_weather\", \"description\": \"The weather now\", \"parameters\": {{\"type\": \"object\", \"properties\": {{\"city\": {{\"type\": \"string\"}}}}}}}}}}][/AVAILABLE_TOOLS][INST]Be brief.\n\nAnd in Rome?[/INST]"
        );
        assert_eq!(out, want);
        // Its own refusals read as they are written.
        let bad = request(
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),
        );
        let (messages, tools) = jinja_input(&bad.messages, &m);
        let e = t
            .render(&messages, Some(&tools), "<s>", "</s>")
            .unwrap_err();
        assert!(e.contains("roles must alternate"), "{e}");
    }

    #[test]
    fn mistral_small_templates_render_with_their_system_prompt_and_spaced_lists() {
        let small =
            include_str!("../tests/templates/mistralai-Mistral-Small-3.1-24B-Instruct-2503.jinja");
        assert_eq!(Syntax::of_template(Some(small)), Syntax::Mistral);
        let (_, messages, tools, id) = with_a_call_for(Syntax::Mistral);
        let t = crate::jinja::ChatTemplate::new(small).unwrap();
        let out = t.render(&messages, Some(&tools), "<s>", "</s>").unwrap();
        assert!(
            out.starts_with("<s>[SYSTEM_PROMPT]You are a helpful assistant that can call tools."),
            "{out}"
        );
        assert!(
            out.contains("additional tool calls] if you call more than one tool."),
            "{out}"
        );
        assert!(
            out.contains(
                "interpret for the user.Be brief.[/SYSTEM_PROMPT][INST]Weather in Oslo?[/INST]"
            ),
            "{out}"
        );
        assert!(out.contains(&format!("[TOOL_CALLS] [{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"Oslo\"}}, \"id\": \"{id}\"}}]</s>")), "{out}");
        assert!(out.contains(&format!("[TOOL_RESULTS] {{\"content\": 7 C, \"call_id\": \"{id}\"}}[/TOOL_RESULTS]It is 7 C.</s>")), "{out}");
        assert!(
            out.ends_with("[/AVAILABLE_TOOLS][INST]And in Rome?[/INST]"),
            "{out}"
        );
        // Its answers open with the token, then a space: read as calls.
        let (_, calls) = said_in(
            Syntax::Mistral,
            &["[TOOL_CALLS] [", "{\"name\": \"f\", \"arguments\": {}}]"],
        );
        assert_eq!(names(&calls), ["f"]);
    }

    #[test]
    fn newer_mistral_templates_render_calls_with_args_and_short_ids() {
        let v11 = include_str!("../tests/templates/mistral-common-1.13.1-v11.jinja");
        let v13 = include_str!("../tests/templates/mistral-common-1.13.1-v13-think.jinja");
        let (_, messages, tools, id) = with_a_call_for(Syntax::MistralArgs);
        for (source, call, result) in [
            (
                v11,
                format!("[TOOL_CALLS]get_weather[CALL_ID]{id}[ARGS]{{\"city\": \"Oslo\"}}</s>"),
                format!("[TOOL_RESULTS]{id}[TOOL_CONTENT]7 C[/TOOL_RESULTS]It is 7 C.</s>"),
            ),
            (
                v13,
                "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}</s>".to_owned(),
                "[TOOL_RESULTS]7 C[/TOOL_RESULTS]It is 7 C.</s>".to_owned(),
            ),
        ] {
            assert_eq!(Syntax::of_template(Some(source)), Syntax::MistralArgs);
            let t = crate::jinja::ChatTemplate::new(source).unwrap();
            let out = t.render(&messages, Some(&tools), "<s>", "</s>").unwrap();
            assert!(
                out.starts_with("<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT]"),
                "{out}"
            );
            assert!(
                out.contains(&format!("[INST]Weather in Oslo?[/INST]{call}")),
                "{out}"
            );
            assert!(out.contains(&result), "{out}");
            assert!(out.ends_with("[INST]And in Rome?[/INST]"), "{out}");
        }
    }

    #[test]
    fn a_reply_streams_as_its_decoded_text() {
        let json = r#"{ "response": "Hi \"you\"\n\u00e9\ud83d\ude00 ok" }"#;
        let pieces = chars(json);
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let (text, calls) = said(&refs);
        assert_eq!(text, "Hi \"you\"\né😀 ok");
        assert!(calls.is_empty());
    }

    #[test]
    fn calls_stream_their_name_then_their_arguments() {
        let json = r#"{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Pa,}ris", "n": [1, 2]}}, {"name": "now", "arguments": {}}]}"#;
        let pieces = chars(json);
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let (text, calls) = said(&refs);
        assert_eq!(text, "");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name.as_deref(), Some("get_weather"));
        assert!(
            calls[0]
                .id
                .as_deref()
                .is_some_and(|i| i.starts_with("call_"))
        );
        assert_eq!(calls[0].arguments, r#"{"city": "Pa,}ris", "n": [1, 2]}"#);
        let v: Value = serde_json::from_str(&calls[0].arguments).unwrap_or_default();
        assert_eq!(v["city"], "Pa,}ris");
        assert_eq!(calls[1].name.as_deref(), Some("now"));
        assert_eq!(calls[1].arguments, "{}");
        assert_ne!(calls[0].id, calls[1].id);
    }

    #[test]
    fn one_call_without_parallel_calls() {
        let (_, calls) = said(&[
            r#"{"tool_call": {"name": "f", "argu"#,
            r#"ments": {"a": 1}}}"#,
        ]);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].arguments, r#"{"a": 1}"#);
    }

    fn request(extra: Value) -> ChatCompletionRequest {
        let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        ChatCompletionRequest::from_json(v.to_string().as_bytes())
            .unwrap_or_else(|e| unreachable!("{}", e.message))
    }

    fn mode(extra: Value) -> Result<Option<ToolMode>, ApiError> {
        from_chat(&request(extra), |_, _| Ok(()))
    }

    const WEATHER: &str = r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]"#;

    #[test]
    fn tool_choice_is_read_and_checked() {
        let tools: Value = serde_json::from_str(WEATHER).unwrap_or_default();
        let m = mode(json!({"tools": tools})).ok().flatten();
        assert!(
            m.as_ref()
                .is_some_and(|m| m.choice == Choice::Auto && m.parallel)
        );
        let m = mode(json!({"tools": tools, "tool_choice": "none"}))
            .ok()
            .flatten();
        assert!(m.is_none());
        let m = mode(json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": false}))
            .ok()
            .flatten();
        assert!(m.is_some_and(|m| m.choice == Choice::Named("get_weather".into()) && !m.parallel));
        let e = mode(json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "nope"}}}))
            .err()
            .unwrap_or_else(|| unreachable!());
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        assert!(e.message.contains("`nope`"), "{}", e.message);
        let e = mode(json!({"tools": tools, "tool_choice": "sometimes"})).err();
        assert!(e.is_some_and(|e| e.param.as_deref() == Some("tool_choice")));
        let e = mode(json!({"tools": [{"type": "web_search"}]})).err();
        assert!(e.is_some_and(|e| e.param.as_deref() == Some("tools[0]")));
        let e = mode(json!({"tool_choice": "required"})).err();
        assert!(e.is_some_and(|e| e.param.as_deref() == Some("tool_choice")));
    }

    #[test]
    fn the_schema_pins_the_answer_to_the_choice() {
        let tools: Value = serde_json::from_str(WEATHER).unwrap_or_default();
        let m = mode(json!({"tools": tools, "tool_choice": "required"}))
            .ok()
            .flatten()
            .unwrap_or_else(|| unreachable!());
        let s = m.schema(None);
        assert_eq!(s["required"], json!(["tool_calls"]));
        assert_eq!(
            s.pointer("/properties/tool_calls/items/properties/name/const"),
            Some(&json!("get_weather"))
        );
        let auto = ToolMode {
            choice: Choice::Auto,
            ..m
        };
        let s = auto.schema(Some(&json!({"type": "object"})));
        assert_eq!(
            s.pointer("/anyOf/1/properties/response"),
            Some(&json!({"type": "object"}))
        );
    }

    #[test]
    fn a_conversation_with_calls_reads_back_as_it_went() {
        let r: ChatCompletionRequest = ChatCompletionRequest::from_json(json!({"model": "m", "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ]}).to_string().as_bytes())
        .unwrap_or_else(|e| unreachable!("{}", e.message));
        let tools: Value = serde_json::from_str(WEATHER).unwrap_or_default();
        let m = mode(json!({"tools": tools})).ok().flatten();
        let out = messages(&r.messages, m.as_ref());
        assert_eq!(out[0].0, "system");
        assert!(out[0].1.contains("get_weather"), "{}", out[0].1);
        assert_eq!(out[2].0, "assistant");
        assert_eq!(
            out[2].1,
            r#"{"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris"}}]}"#
        );
        assert_eq!(out[3].0, "user");
        assert_eq!(
            out[3].1,
            r#"{"tool_response":{"tool_call_id":"call_1","content":"18C"}}"#
        );
    }
}
