//! `GET /openapi.json`: an OpenAPI 3.1 document of every endpoint Hearth serves:
//! the OpenAI-compatible `/v1` API, Ollama's `/api`, the chat UI's `/api/hearth`
//! and the jobs' `/api/jobs`, and the probes. Public (a client reads it before it
//! has a key), like `/health`.
//!
//! Written here rather than derived from the types: the request types parse
//! by hand (they keep unknown fields for upstreams), and what the document must
//! say (which fields Hearth reads, which statuses each endpoint answers) is a
//! description of behaviour, not of a struct. The tests run Schemathesis against
//! it (tests/sdk/test_openapi.py): no 5xx, every answer as documented.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const OPENAPI_PATH: &str = "/openapi.json";

/// The document, made once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

pub async fn handler() -> Response {
    let mut r = axum::Json(document()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    r
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ollama_error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OllamaError"}}}})
}

/// The answers every API endpoint may give besides its own: refused key, limits,
/// a body too large or not JSON, no backend.
fn common_errors(mut responses: Value, ollama: bool) -> Value {
    let e = |d: &str| {
        if ollama {
            ollama_error(d)
        } else {
            error_response(d)
        }
    };
    for (code, d) in [
        (
            "400",
            "the request is malformed or a field is out of range; `param` names it",
        ),
        (
            "401",
            "no API key, or an unknown one (when keys are configured)",
        ),
        ("404", "no such model"),
        ("413", "the body is larger than limits.max_body_bytes"),
        ("415", "the body is not JSON"),
        (
            "429",
            "rate limit or queue full; Retry-After says when to try again",
        ),
        ("502", "the upstream answered with something unusable"),
        (
            "503",
            "no backend can serve now (loading, down); Retry-After",
        ),
        ("504", "the backend did not answer in time"),
    ] {
        if responses.get(code).is_none() {
            responses[code] = e(d);
        }
    }
    // 401 from the key check is always OpenAI's shape.
    if ollama {
        responses["401"] =
            error_response("no API key, or an unknown one (when keys are configured)");
    }
    responses
}

fn post_json(summary: &str, schema: &str, ok: Value, ollama: bool) -> Value {
    json!({"post": {
        "summary": summary,
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}},
        "responses": common_errors(json!({"200": ok}), ollama),
    }})
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn get_json(summary: &str, schema: Value, ollama: bool) -> Value {
    json!({"get": {"summary": summary, "responses": common_errors(json!({"200": json_ok("the answer", schema)}), ollama)}})
}

/// Answers the tests do not pin down further than "JSON".
fn any_json() -> Value {
    json!({})
}

fn build() -> Value {
    let completion_ok = json!({
        "description": "the answer: one JSON object, or Server-Sent Events when `stream` is true",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            // Each event's `data` is a chunk (or, for /v1/responses, a typed event).
            "text/event-stream": {"schema": {}},
        }
    });
    let ndjson_ok = json!({
        "description": "one JSON object, or (streamed, the default) one object per line",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/x-ndjson": {"schema": {}},
        }
    });
    let mut paths = serde_json::Map::new();
    let mut put = |path: &str, item: Value| {
        paths.insert(path.to_owned(), item);
    };
    put(
        "/v1/chat/completions",
        post_json(
            "Chat completion (OpenAI)",
            "ChatRequest",
            completion_ok.clone(),
            false,
        ),
    );
    put(
        "/v1/completions",
        post_json(
            "Text completion, `suffix` for fill-in-the-middle (OpenAI)",
            "CompletionRequest",
            completion_ok.clone(),
            false,
        ),
    );
    put(
        "/v1/embeddings",
        post_json(
            "Embeddings (OpenAI)",
            "EmbeddingsRequest",
            json_ok(
                "a vector per input",
                json!({"$ref": "#/components/schemas/EmbeddingsResponse"}),
            ),
            false,
        ),
    );
    put(
        "/v1/responses",
        post_json(
            "Responses API basics, served as a chat completion",
            "ResponsesRequest",
            completion_ok,
            false,
        ),
    );
    let id_param = json!({"name": "id", "in": "path", "required": true,
        "description": "a response id (1 to 256 of `[A-Za-z0-9_-]`)",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,256}$"}});
    let query = |name: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "schema": schema});
    let stored = |summary: &str, params: Vec<Value>, ok: Value| {
        let e = error_response;
        json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": ok,
                "400": e("the id is not a response id (`param: response_id`), or the upstream refused the call"),
                "401": e("no API key, or an unknown one (when keys are configured)"),
                "404": e("no upstream serving the Responses API holds this response (`code: not_found`)"),
                "429": e("the key's requests per minute, or the upstream's rate limit; Retry-After"),
                "502": e("no upstream answered and one failed (an error status, a broken answer); the message names its model"),
                "503": e("no upstream answered and one could not be reached; Retry-After"),
                "default": e("the upstream's own answer, passed on"),
            },
        })
    };
    let response_ok = json!({
        "description": "the upstream's response object, or its events (`stream=true`)",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": {}},
        }
    });
    put(
        "/v1/responses/{id}",
        json!({
            "get": stored(
                "A stored response, from the upstream that holds it",
                vec![
                    id_param.clone(),
                    query("include[]", json!({"type": "array", "items": {"type": "string"}})),
                    query("stream", json!({"type": "boolean"})),
                    query("starting_after", json!({"type": "integer"})),
                ],
                response_ok,
            ),
            "delete": stored(
                "Deletes a stored response on the upstream that holds it",
                vec![id_param.clone()],
                json_ok("`{id, object: \"response.deleted\", deleted}`", json!({"type": "object"})),
            ),
        }),
    );
    put(
        "/v1/responses/{id}/input_items",
        json!({"get": stored(
            "A stored response's input items, from the upstream that holds it",
            vec![
                id_param.clone(),
                query("after", json!({"type": "string"})),
                query("before", json!({"type": "string"})),
                query("limit", json!({"type": "integer", "minimum": 1, "maximum": 100})),
                query("order", json!({"type": "string", "enum": ["asc", "desc"]})),
                query("include[]", json!({"type": "array", "items": {"type": "string"}})),
            ],
            json_ok("a list of items", json!({"type": "object"})),
        )}),
    );
    put(
        "/v1/responses/{id}/cancel",
        json!({"post": stored(
            "Cancels a background response on the upstream that holds it",
            vec![id_param],
            json_ok("the response object", json!({"type": "object"})),
        )}),
    );
    put(
        "/infill",
        post_json(
            "Fill-in-the-middle in llama.cpp server's shape (llama.vim, llama.vscode)",
            "InfillRequest",
            json!({"description": "the completion in llama.cpp's shape, whole or as server-sent events",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InfillResponse"}},
                "text/event-stream": {"schema": {"type": "string"}},
            }}),
            false,
        ),
    );
    put(
        "/v1/models",
        get_json(
            "The configured models",
            json!({"$ref": "#/components/schemas/ModelList"}),
            false,
        ),
    );
    put(
        "/v1/models/{id}",
        json!({"get": {
            "summary": "One model",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": common_errors(json!({"200": json_ok("the model", json!({"$ref": "#/components/schemas/Model"}))}), false),
        }}),
    );
    put(
        "/api/version",
        get_json(
            "Ollama: the API version",
            json!({"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}}),
            true,
        ),
    );
    put(
        "/api/tags",
        get_json(
            "Ollama: the models",
            json!({"type": "object", "required": ["models"], "properties": {"models": {"type": "array"}}}),
            true,
        ),
    );
    put(
        "/api/ps",
        get_json(
            "Ollama: the loaded models",
            json!({"type": "object", "required": ["models"], "properties": {"models": {"type": "array"}}}),
            true,
        ),
    );
    put(
        "/api/show",
        post_json(
            "Ollama: one model's details",
            "OllamaModelRequest",
            json_ok("details", json!({"type": "object"})),
            true,
        ),
    );
    put(
        "/api/chat",
        post_json("Ollama: chat", "OllamaChatRequest", ndjson_ok.clone(), true),
    );
    put(
        "/api/generate",
        post_json(
            "Ollama: generate",
            "OllamaGenerateRequest",
            ndjson_ok.clone(),
            true,
        ),
    );
    put(
        "/api/embed",
        post_json(
            "Ollama: embeddings",
            "OllamaEmbedRequest",
            json_ok(
                "a vector per input",
                json!({"type": "object", "required": ["embeddings"], "properties": {"embeddings": {"type": "array"}}}),
            ),
            true,
        ),
    );
    put(
        "/api/embeddings",
        post_json(
            "Ollama: one embedding (older form)",
            "OllamaEmbeddingsRequest",
            json_ok(
                "the vector",
                json!({"type": "object", "required": ["embedding"], "properties": {"embedding": {"type": "array"}}}),
            ),
            true,
        ),
    );
    put(
        "/api/pull",
        post_json(
            "Ollama: pull (a configured model, or a GGUF URL into data_dir/models)",
            "OllamaPullRequest",
            ndjson_ok,
            true,
        ),
    );
    let probe = |summary: &str| {
        json!({"get": {"summary": summary, "security": [], "responses": {
            "200": json_ok("up", any_json()),
            "503": json_ok("not ready: the models' states", any_json()),
        }}})
    };
    put("/health", probe("Liveness"));
    put("/ready", probe("Readiness: 200 once a model can serve"));
    put(
        "/metrics",
        json!({"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "401": error_response("a key is needed"),
        }}}),
    );
    put(
        OPENAPI_PATH,
        json!({"get": {"summary": "This document", "security": [],
        "responses": {"200": json_ok("OpenAPI 3.1", json!({"type": "object"}))}}}),
    );
    // The chat UI's and the jobs' APIs: documented for completeness; their own
    // docs (docs/ui.md, docs/jobs.md) describe the bodies.
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let ui = |summary: &str| json!({"summary": summary, "responses": common_errors(json!({"200": json_ok("the answer", any_json())}), false)});
    let created = |summary: &str| {
        json!({"summary": summary,
        "responses": common_errors(json!({"201": json_ok("created", any_json())}), false)})
    };
    put(
        "/api/hearth/conversations",
        json!({"get": ui("Chat UI: list conversations"), "post": created("Chat UI: create a conversation")}),
    );
    put(
        "/api/hearth/conversations/{id}",
        json!({"parameters": id, "get": ui("Chat UI: one conversation with its messages"),
        "patch": ui("Chat UI: rename, change model or system prompt"), "delete": ui("Chat UI: delete (restorable)")}),
    );
    put(
        "/api/hearth/conversations/{id}/restore",
        json!({"parameters": id, "post": ui("Chat UI: restore a deleted conversation")}),
    );
    put(
        "/api/hearth/conversations/{id}/messages",
        json!({"parameters": id, "post": ui("Chat UI: send a message; the reply streams as Server-Sent Events")}),
    );
    put(
        "/api/hearth/conversations/{id}/regenerate",
        json!({"parameters": id, "post": ui("Chat UI: answer the last message again")}),
    );
    put(
        "/api/hearth/conversations/{id}/export",
        json!({"parameters": id, "get": ui("Chat UI: export as Markdown or JSON")}),
    );
    put(
        "/api/jobs",
        json!({"get": ui("Jobs: list"), "post": created("Jobs: submit an image (multipart)")}),
    );
    put(
        "/api/jobs/{id}",
        json!({"parameters": id, "get": ui("Jobs: one job"), "delete": ui("Jobs: delete")}),
    );
    put(
        "/api/jobs/{id}/cancel",
        json!({"parameters": id, "post": ui("Jobs: cancel")}),
    );
    put(
        "/api/jobs/{id}/retry",
        json!({"parameters": id, "post": ui("Jobs: run again")}),
    );
    put(
        "/api/jobs/{id}/code",
        json!({"parameters": id, "put": ui("Jobs: run edited code")}),
    );
    put(
        "/api/jobs/{id}/events",
        json!({"parameters": id, "get": ui("Jobs: progress as Server-Sent Events")}),
    );
    put(
        "/api/jobs/{id}/files/{name}",
        json!({"parameters": [id[0].clone(),
        {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
        "get": ui("Jobs: an input or output file (the chart, the logs)")}),
    );

    let text_or_list = json!({"oneOf": [
        {"type": "string"}, {"type": "array", "items": {"type": "string"}},
        {"type": "array", "items": {"type": "integer", "minimum": 0}},
        {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
    ]});
    let sampling = json!({
        "model": {"type": "string"},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "top_k": {"type": "integer"},
        "min_p": {"type": "number"},
        "seed": {"type": "integer"},
        "stop": {"oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1}}]},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    });
    let with = |extra: Value, required: &[&str]| {
        let mut props = sampling.clone();
        if let (Some(p), Value::Object(e)) = (props.as_object_mut(), extra) {
            p.extend(e);
        }
        json!({"type": "object", "required": required, "properties": props})
    };
    let ollama_options = json!({"type": "object", "description": "temperature, top_p, top_k, min_p, seed, stop, presence_penalty, frequency_penalty, num_predict; others are ignored"});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Hearth",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A self-hosted AI server: the OpenAI-compatible API under /v1, Ollama's API under /api, the chat UI's and the jobs' APIs. See docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an API key ([[keys]] or HEARTH_API_KEYS); none on loopback without keys"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["message", "type"],
                    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
                "OllamaError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "ChatRequest": with(json!({
                    "messages": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role"],
                        "properties": {"role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool", "function"]},
                            "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}, {"type": "null"}]}}}},
                    "max_completion_tokens": {"type": "integer", "minimum": 1},
                    "n": {"type": "integer", "const": 1},
                    "response_format": {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}}},
                    "tools": {"type": "array", "items": {"type": "object"}},
                    "chat_template_kwargs": {"type": "object", "description": "variables for the model's chat template (embedded engine; forwarded to upstreams): {\"enable_thinking\": false} turns Qwen3's thinking off"},
                }), &["messages"]),
                "CompletionRequest": with(json!({"prompt": text_or_list.clone(), "suffix": {"type": "string"}}), &["prompt"]),
                "EmbeddingsRequest": {"type": "object", "required": ["input"], "properties": {
                    "model": {"type": "string"}, "input": text_or_list,
                    "encoding_format": {"enum": ["float", "base64"]}, "dimensions": {"type": "integer", "minimum": 1}}},
                "EmbeddingsResponse": {"type": "object", "required": ["object", "data", "model", "usage"], "properties": {
                    "object": {"const": "list"}, "model": {"type": "string"},
                    "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"],
                        "properties": {"object": {"const": "embedding"}, "index": {"type": "integer"},
                            "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]}}}},
                    "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"]}}},
                "ResponsesRequest": {"type": "object", "required": ["input"], "properties": {
                    "model": {"type": "string"}, "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                    "instructions": {"type": "string"}, "stream": {"type": "boolean"},
                    "max_output_tokens": {"type": "integer", "minimum": 1},
                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                    "tools": {"type": "array", "items": {"type": "object"}}}},
                "InfillRequest": {"type": "object", "properties": {
                    "model": {"type": "string"}, "input_prefix": {"type": "string"}, "input_suffix": {"type": "string"},
                    "input_extra": {"type": "array", "items": {"type": "object", "required": ["text"], "properties": {
                        "filename": {"type": "string"}, "text": {"type": "string"}}}},
                    "prompt": {"type": "string"}, "n_predict": {"type": "integer"}, "stream": {"type": "boolean"},
                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    "top_k": {"type": "integer", "minimum": 0}, "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                    "stop": {"type": "array", "items": {"type": "string"}},
                    "t_max_predict_ms": {"type": "integer", "minimum": 0},
                    "response_fields": {"type": "array", "items": {"type": "string"}}}},
                "InfillResponse": {"type": "object", "properties": {
                    "content": {"type": "string"}, "stop": {"type": "boolean"},
                    "stop_type": {"enum": ["eos", "limit", "word"]}, "tokens_predicted": {"type": "integer"},
                    "tokens_evaluated": {"type": "integer"}, "timings": {"type": "object"}}},
                "Model": {"type": "object", "required": ["id", "object", "status"], "properties": {
                    "id": {"type": "string"}, "object": {"const": "model"},
                    "status": {"type": "string"}, "kind": {"const": "embedding"},
                    "tool_format": {"enum": ["generic", "hermes", "llama3", "mistral", "mistral-args"]}}},
                "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
                    "object": {"const": "list"}, "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}},
                "OllamaModelRequest": {"type": "object", "required": ["model"], "properties": {"model": {"type": "string"}}},
                "OllamaChatRequest": {"type": "object", "required": ["model"], "properties": {
                    "model": {"type": "string"}, "messages": {"type": "array", "items": {"type": "object", "required": ["role"],
                        "properties": {"role": {"type": "string"}, "content": {"type": "string"}, "images": {"type": "array", "items": {"type": "string"}}}}},
                    "stream": {"type": "boolean"}, "format": {}, "options": ollama_options.clone(), "keep_alive": {}, "tools": {"type": "array"}}},
                "OllamaGenerateRequest": {"type": "object", "required": ["model"], "properties": {
                    "model": {"type": "string"}, "prompt": {"type": "string"}, "suffix": {"type": "string"},
                    "system": {"type": "string"}, "raw": {"type": "boolean"}, "stream": {"type": "boolean"},
                    "images": {"type": "array", "items": {"type": "string"}},
                    "format": {}, "options": ollama_options, "keep_alive": {}}},
                "OllamaEmbedRequest": {"type": "object", "required": ["model", "input"], "properties": {
                    "model": {"type": "string"}, "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "truncate": {"type": "boolean"}, "dimensions": {"type": "integer"}}},
                "OllamaEmbeddingsRequest": {"type": "object", "required": ["model", "prompt"], "properties": {
                    "model": {"type": "string"}, "prompt": {"type": "string"}}},
                "OllamaPullRequest": {"type": "object", "required": ["model"], "properties": {
                    "model": {"type": "string"}, "stream": {"type": "boolean"}}},
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ref_resolves_and_every_route_is_documented() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(schemas.contains_key(name), "unresolved $ref {name}");
        }
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/responses",
            "/v1/responses/{id}",
            "/v1/responses/{id}/input_items",
            "/v1/responses/{id}/cancel",
            "/v1/models",
            "/v1/models/{id}",
            "/api/chat",
            "/api/generate",
            "/api/embed",
            "/api/tags",
            "/api/show",
            "/api/ps",
            "/api/pull",
            "/api/version",
            "/health",
            "/ready",
            "/metrics",
            "/api/hearth/conversations",
            "/api/jobs",
        ] {
            assert!(paths.contains_key(p), "{p} is not documented");
        }
    }
}
