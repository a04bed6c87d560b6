"""Drives a real `hearth serve` with the official `ollama` Python library.

Hearth serves the embedded SmolLM2 (chat), the embedded all-MiniLM-L6-v2
(embeddings) and the fake upstream (crates/hearth-testkit, run as a process) as
a chat model; the library calls Hearth's Ollama API as it would call Ollama:
version, list, show, ps, chat and generate (streamed and whole, with options and
`format`), embed (checked against the numpy reference vectors), pull (a
configured model, a URL served here, an unknown name), and the errors.

Usage: HEARTH_BIN=... FAKE_UPSTREAM_BIN=... HEARTH_MODEL=... HEARTH_EMBEDDING_MODEL=... python test_ollama.py
Prints `N passed, M failed` and exits non-zero on any failure.
"""

import functools
import http.server
import json
import math
import os
import shutil
import sys
import threading

import harness
import httpx
import ollama


def start():
    procs = []
    upstream = harness.start_fake_upstream(procs)
    base, tmp = harness.start_hearth(
        procs,
        f"""
[[models]]
name = "smollm2-135m"
path = "{os.environ["HEARTH_MODEL"]}"
context = 2048
parallel = 2
tools = "pass"

[[models]]
name = "minilm"
kind = "embedding"
path = "{os.environ["HEARTH_EMBEDDING_MODEL"]}"

[[models]]
name = "fake-chat"
backend = "upstream"
base_url = "{upstream}"
""",
        "hearth-ollama-",
    )
    return base, tmp, procs


def file_server(directory):
    """A loopback HTTP server for `directory` (the URL a pull fetches)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=directory))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    base, tmp, procs = start()
    client = ollama.Client(host=base)
    reference = json.load(
        open(os.path.join(os.path.dirname(__file__), "../../tools/embedding-model/reference.json"))
    )["sentences"]
    tests = []

    def test(fn):
        tests.append(fn)
        return fn

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    @test
    def version_list_show_ps():
        v = httpx.get(base + "/api/version").json()
        assert v["version"].count(".") == 2, v
        names = [m.model for m in client.list().models]
        assert names == ["smollm2-135m:latest", "minilm:latest", "fake-chat:latest"], names
        smol = client.list().models[0]
        assert smol.details.format == "gguf" and smol.details.family == "llama", smol
        assert smol.size == os.path.getsize(os.environ["HEARTH_MODEL"]), smol.size
        assert len(smol.digest) == 64, smol.digest
        shown = client.show("smollm2-135m:latest")
        assert shown.capabilities == ["completion", "tools"], shown.capabilities
        assert shown.modelinfo["llama.context_length"] == 8192, shown.modelinfo
        assert client.show("minilm").capabilities == ["embedding"]
        assert client.show("minilm").details.family == "bert"
        loaded = sorted(m.model for m in client.ps().models)
        assert loaded == ["minilm:latest", "smollm2-135m:latest"], loaded

    @test
    def chat_whole_and_streamed_agree():
        messages = [{"role": "user", "content": "Name a colour."}]
        options = {"temperature": 0, "num_predict": 12, "seed": 7}
        whole = client.chat(model="smollm2-135m", messages=messages, options=options, stream=False)
        assert whole.done and whole.done_reason in ("stop", "length"), whole
        assert whole.message.role == "assistant" and whole.message.content, whole
        assert 0 < whole.eval_count <= 12 and whole.prompt_eval_count > 0, whole
        assert whole.total_duration > 0, whole
        parts = list(client.chat(model="smollm2-135m:latest", messages=messages, options=options, stream=True))
        assert parts[-1].done and not any(p.done for p in parts[:-1]), parts
        assert "".join(p.message.content for p in parts), parts
        assert 0 < parts[-1].eval_count <= 12, parts[-1]
        # Whole and streamed say the same (the fake upstream answers alike every time;
        # greedy decoding of the tiny model may break a near tie differently when
        # the second request reuses the first one's prompt cache).
        whole = client.chat(model="fake-chat", messages=messages, stream=False)
        parts = list(client.chat(model="fake-chat", messages=messages, stream=True))
        assert len(parts) > 2, parts
        assert "".join(p.message.content for p in parts) == whole.message.content, parts
        assert parts[-1].eval_count == whole.eval_count, parts[-1]

    @test
    def chat_with_tools_on_the_embedded_model():
        def get_weather(city: str) -> str:
            """The weather in a city now.

            Args:
              city: the city
            """
            return "sunny"

        r = client.chat(model="smollm2-135m", messages=[{"role": "user", "content": "Weather in Paris?"}],
                        tools=[get_weather], options={"temperature": 0, "num_predict": 60}, stream=False)
        calls = r.message.tool_calls or []
        if calls:
            assert calls[0].function.name == "get_weather", calls
            assert isinstance(calls[0].function.arguments.get("city"), str), calls
        else:
            # Under tool_choice auto (Ollama has no other) the model may reply instead.
            assert r.message.content and not r.message.content.startswith("{"), r.message

    @test
    def chat_with_an_upstream_model():
        r = client.chat(model="fake-chat", messages=[{"role": "user", "content": "hi"}], stream=False)
        assert r.message.content == "Hello from the fake upstream.", r
        assert r.eval_count > 0, r

    @test
    def generate_whole_streamed_and_json():
        r = client.generate(model="smollm2-135m", prompt="The sky is", options={"num_predict": 6, "temperature": 0})
        assert r.done and r.response, r
        parts = list(client.generate(model="smollm2-135m", prompt="The sky is", stream=True,
                                     options={"num_predict": 6, "temperature": 0}))
        assert "".join(p.response for p in parts) and parts[-1].done, parts
        j = client.generate(model="smollm2-135m", prompt="Give a JSON object with a name.", format="json",
                            options={"num_predict": 48, "temperature": 0})
        if j.done_reason == "stop":
            json.loads(j.response)
        schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "blue"]}},
                  "required": ["colour"]}
        s = client.chat(model="smollm2-135m", messages=[{"role": "user", "content": "Pick a colour."}],
                        format=schema, options={"num_predict": 32, "temperature": 0})
        assert json.loads(s.message.content)["colour"] in ("red", "blue"), s.message.content
        loaded = client.generate(model="smollm2-135m", prompt="")
        assert loaded.done_reason == "load", loaded

    @test
    def embed_matches_the_reference():
        texts = [s["text"] for s in reference]
        r = client.embed(model="minilm", input=texts)
        assert len(r.embeddings) == len(texts)
        for v, s in zip(r.embeddings, reference):
            assert len(v) == 384
            assert cosine(v, s["embedding"]) > 0.999, s["text"]
        assert r.prompt_eval_count == sum(s["n_tokens"] for s in reference), r.prompt_eval_count
        one = client.embed(model="minilm:latest", input=texts[0])
        assert cosine(one.embeddings[0], reference[0]["embedding"]) > 0.999
        old = client.embeddings(model="minilm", prompt=texts[0])
        assert cosine(old.embedding, reference[0]["embedding"]) > 0.999
        # Longer than the model's 512 tokens: cut to fit by default, as Ollama does;
        # refused with truncate=False.
        long = "word " * 700
        cut = client.embed(model="minilm", input=[long, texts[0]])
        assert len(cut.embeddings[0]) == 384 and cut.prompt_eval_count == 512 + reference[0]["n_tokens"], cut.prompt_eval_count
        assert cosine(cut.embeddings[1], reference[0]["embedding"]) > 0.999
        try:
            client.embed(model="minilm", input=long, truncate=False)
        except ollama.ResponseError as e:
            assert e.status_code == 400 and "512" in e.error, e.error
        else:
            raise AssertionError("expected a 400 for a long input with truncate=False")

    @test
    def pull_a_configured_model_a_url_and_an_unknown_name():
        assert client.pull("smollm2-135m").status == "success"
        assert list(client.pull("smollm2-135m", stream=True))[-1].status == "success"
        served = harness.mkdtemp("hearth-pull-")
        shutil.copy(os.environ["HEARTH_EMBEDDING_MODEL"], os.path.join(served, "pulled.gguf"))
        srv = file_server(served)
        try:
            url = f"http://127.0.0.1:{srv.server_address[1]}/pulled.gguf"
            lines = list(client.pull(url, stream=True))
            assert lines[-1].status == "success", lines[-1]
            progress = [l for l in lines if l.completed]
            assert progress and progress[-1].completed == os.path.getsize(os.environ["HEARTH_EMBEDDING_MODEL"]), lines
            assert os.path.exists(os.path.join(tmp, "data", "models", "pulled.gguf"))
        finally:
            srv.shutdown()
        try:
            client.pull("llama3.2:1b")
        except ollama.ResponseError as e:
            assert e.status_code == 404, e
            assert "not found" in e.error, e.error
        else:
            raise AssertionError("expected a 404 for a model Hearth does not have")

    @test
    def errors_say_what_is_wrong():
        for call, status, words in (
            (lambda: client.chat(model="ghost", messages=[{"role": "user", "content": "hi"}]), 404, "not found"),
            (lambda: client.chat(model="minilm", messages=[{"role": "user", "content": "hi"}]), 400, "embedding model"),
            (lambda: client.embed(model="smollm2-135m", input="hi"), 400, "chat model"),
            (lambda: client.embed(model="minilm", input=[]), 400, "empty"),
            (lambda: client.chat(model="smollm2-135m", messages=[{"role": "user", "content": "hi"}],
                                 options={"temperature": 9}), 400, "temperature"),
        ):
            try:
                call()
            except ollama.ResponseError as e:
                assert e.status_code == status, (e.status_code, e.error)
                assert words in e.error, e.error
            else:
                raise AssertionError(f"expected {status} ({words})")
        r = httpx.post(base + "/api/chat", content=b'{"model": ', headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "error" in r.json(), r.text
        # Still serving.
        assert client.chat(model="fake-chat", messages=[{"role": "user", "content": "hi"}]).message.content

    return harness.run("ollama", tests, procs)

if __name__ == "__main__":
    sys.exit(main())
