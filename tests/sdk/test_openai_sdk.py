"""Drives a real `hearth serve` with the official `openai` Python SDK.

The gateway routes to the fake upstream (crates/hearth-testkit, run as a
process), so the suite checks the gateway's OpenAI compatibility as the SDK sees
it: listing models, chat and text completions, streaming with usage, embeddings
(the embedded all-MiniLM-L6-v2 and an upstream's, as floats and as the SDK's
default base64), and the SDK's own exception classes for 400/401/404/429.

Usage: HEARTH_BIN=... FAKE_UPSTREAM_BIN=... HEARTH_EMBEDDING_MODEL=... python test_openai_sdk.py
Prints `N passed, M failed` and exits non-zero on any failure.
"""

import json
import math
import os
import sys

from typing import List, Literal

import harness
import openai
from pydantic import BaseModel, Field
from openai import OpenAI

KEY = "sk-sdk-test-0123456789"
LIMITED_KEY = "sk-sdk-limited-0123456789"


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time",
    "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}},
                   "required": ["zone"], "additionalProperties": False}}}
# The fake upstream's answers for `fake/tools`: two calls, each request.
TOOL_CALLS = [{"name": "get_weather", "arguments": '{"city": "Paris"}'},
              {"name": "get_time", "arguments": '{"zone": "CET"}'}]


def start():
    procs = []
    script = os.path.join(harness.mkdtemp("hearth-sdk-script-"), "script.json")
    with open(script, "w") as f:
        json.dump({"fake/tools": [{"tool_calls": TOOL_CALLS}] * 4}, f)
    upstream = harness.start_fake_upstream(procs, script)
    base, _ = harness.start_hearth(
        procs,
        f"""
[[models]]
name = "fake-chat"
backend = "upstream"
base_url = "{upstream}"
upstream_model = "fake/upstream-model"
tags = ["general"]
context_length = 4096

[[models]]
name = "minilm"
kind = "embedding"
path = "{os.environ["HEARTH_EMBEDDING_MODEL"]}"

[[models]]
name = "smollm2-135m"
path = "{os.environ["HEARTH_MODEL"]}"
context = 2048
parallel = 2
tools = "pass"

[[models]]
name = "fake-responses"
backend = "upstream"
base_url = "{upstream}"
upstream_model = "fake/responses"
responses_api = true

[[models]]
name = "fake-tools"
backend = "upstream"
base_url = "{upstream}"
upstream_model = "fake/tools"

[[models]]
name = "fake-embed"
kind = "embedding"
backend = "upstream"
base_url = "{upstream}"
""",
        "hearth-sdk-",
        key=KEY,
        extra_toml=f"""
[[keys]]
name = "sdk"
key = "{KEY}"

[[keys]]
name = "limited"
key = "{LIMITED_KEY}"
rpm = 1
""",
    )
    return base, procs


def main():
    base, procs = start()
    client = OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)
    tests = []

    def test(fn):
        tests.append(fn)
        return fn

    @test
    def list_and_retrieve_models():
        models = client.models.list()
        ids = [m.id for m in models.data]
        assert ids == ["fake-chat", "minilm", "smollm2-135m", "fake-responses", "fake-tools", "fake-embed"], ids
        assert models.data[1].model_extra["kind"] == "embedding", models.data[1]
        m = client.models.retrieve("fake-chat")
        assert m.id == "fake-chat"
        assert m.model_extra["status"] == "ready", m
        assert m.model_extra["context_length"] == 4096, m

    @test
    def chat_completion():
        r = client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "Say hello"}]
        )
        assert r.choices[0].message.content == "Hello from the fake upstream.", r
        assert r.usage.total_tokens == 9, r.usage

    @test
    def text_completion_with_suffix():
        r = client.completions.create(
            model="fake-chat", prompt="def add(a, b):\n", suffix="\n    return c", max_tokens=8
        )
        assert r.object == "text_completion", r
        assert r.choices[0].text, r

    @test
    def streaming_with_usage():
        stream = client.chat.completions.create(
            model="fake-chat",
            messages=[{"role": "user", "content": "Say hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage, chunks = "", None, 0
        for chunk in stream:
            chunks += 1
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                assert chunk.choices == [], chunk
                usage = chunk.usage
        assert text == "Hello from the fake upstream.", text
        assert chunks >= 3, chunks
        assert usage is not None and usage.total_tokens == 9, usage

    @test
    def streaming_completion():
        stream = client.completions.create(model="fake-chat", prompt="Once", stream=True)
        text = "".join(c.choices[0].text for c in stream if c.choices)
        assert text == "Hello from the fake upstream.", text

    reference = json.load(
        open(os.path.join(os.path.dirname(__file__), "../../tools/embedding-model/reference.json"))
    )["sentences"]

    def cosine(a, b):
        dot = sum(x * y for x, y in zip(a, b))
        return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))

    @test
    def embeddings_embedded_base64_and_float():
        texts = [s["text"] for s in reference]
        # The SDK asks for base64 unless told otherwise, and decodes it itself.
        for fmt in (openai.NOT_GIVEN, "float"):
            r = client.embeddings.create(model="minilm", input=texts, encoding_format=fmt)
            assert r.model == "minilm", r.model
            assert [d.index for d in r.data] == list(range(len(texts)))
            for d, s in zip(r.data, reference):
                assert len(d.embedding) == 384, len(d.embedding)
                c = cosine(d.embedding, s["embedding"])
                assert c > 0.999, (s["text"], fmt, c)
            tokens = sum(s["n_tokens"] for s in reference)
            assert r.usage.prompt_tokens == tokens and r.usage.total_tokens == tokens, r.usage

    @test
    def embeddings_upstream_passed_through():
        r = client.embeddings.create(model="fake-embed", input=["one", "three"])
        assert [d.embedding for d in r.data] == [[0.0, 3.0, 0.5], [1.0, 5.0, 0.5]], r.data
        assert r.usage.prompt_tokens == 8, r.usage

    @test
    def embeddings_bad_requests():
        for kwargs, param in (
            ({"model": "minilm", "input": []}, "input"),
            ({"model": "minilm", "input": "hello", "dimensions": 16}, "dimensions"),
        ):
            try:
                client.embeddings.create(**kwargs)
            except openai.BadRequestError as e:
                assert e.body["param"] == param, e.body
            else:
                raise AssertionError(f"expected BadRequestError for {kwargs}")
        try:
            client.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "hi"}])
        except openai.BadRequestError as e:
            assert e.body["code"] == "model_not_supported", e.body
        else:
            raise AssertionError("expected BadRequestError for a chat with an embedding model")

    @test
    def structured_output_parsed_into_a_pydantic_model():
        class Step(BaseModel):
            n: int

        class Plan(BaseModel):
            colour: Literal["red", "blue"]
            # Bounded (maxItems), so the tiny model's answer ends within max_tokens.
            steps: List[Step] = Field(min_length=1, max_length=2)

        r = client.chat.completions.parse(
            model="smollm2-135m",
            messages=[{"role": "user", "content": "Pick a colour and number two steps."}],
            response_format=Plan,
            max_tokens=200,
            temperature=0,
        )
        parsed = r.choices[0].message.parsed
        assert parsed.colour in ("red", "blue"), r.choices[0].message
        assert 1 <= len(parsed.steps) <= 2, parsed

    @test
    def a_schema_keyword_the_engine_cannot_enforce_is_refused():
        try:
            client.chat.completions.create(
                model="smollm2-135m",
                messages=[{"role": "user", "content": "hi"}],
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
                    "type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}}},
            )
        except openai.BadRequestError as e:
            assert e.body["param"] == "response_format", e.body
            assert "uniqueItems" in e.body["message"], e.body
        else:
            raise AssertionError("expected BadRequestError for uniqueItems")

    @test
    def responses_api_whole_and_streamed():
        r = client.responses.create(
            model="smollm2-135m", input="Name a colour.", instructions="Answer in one word.",
            max_output_tokens=8, temperature=0,
        )
        assert r.object == "response" and r.status in ("completed", "incomplete"), r
        assert r.output_text, r
        assert r.usage.output_tokens > 0 and r.usage.input_tokens > 0, r.usage
        assert r.store is False, r
        events = list(client.responses.create(
            model="smollm2-135m", input="Name a colour.", instructions="Answer in one word.",
            max_output_tokens=8, temperature=0, stream=True,
        ))
        kinds = [e.type for e in events]
        assert kinds[:2] == ["response.created", "response.in_progress"], kinds
        assert kinds[-1] in ("response.completed", "response.incomplete"), kinds
        assert [e.sequence_number for e in events] == list(range(len(events))), kinds
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        # The deltas make the final response's text (the same request).
        assert deltas and deltas == events[-1].response.output_text, (deltas, events[-1])
        # An upstream model, a list of input items.
        u = client.responses.create(model="fake-chat", input=[{"role": "user", "content": "hi"}])
        assert u.output_text == "Hello from the fake upstream.", u
        try:
            client.responses.create(model="fake-chat", input="hi", previous_response_id="resp_x")
        except openai.BadRequestError as e:
            assert e.body["param"] == "previous_response_id", e.body
        else:
            raise AssertionError("expected BadRequestError for previous_response_id")

    @test
    def responses_api_passed_through_to_an_upstream_that_serves_it():
        # responses_api = true: the upstream's own answer, whole and streamed, read
        # by the SDK as it reads OpenAI's; what only that API has goes through.
        r = client.responses.create(model="fake-responses", input="hi", previous_response_id="resp_x",
                                    store=True)
        assert r.output_text == "Hello from the fake upstream.", r
        assert r.model == "fake/responses" and r.usage.output_tokens > 0, r
        events = list(client.responses.create(model="fake-responses", input="hi", stream=True))
        kinds = [e.type for e in events]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert deltas == events[-1].response.output_text == "Hello from the fake upstream.", events[-1]

    @test
    def responses_api_stored_response_read_listed_deleted():
        # store=True on a responses_api model: the upstream keeps it, and the SDK's
        # calls on it reach that upstream through Hearth.
        r = client.responses.create(model="fake-responses", input="hi", store=True)
        got = client.responses.retrieve(r.id)
        assert got.id == r.id and got.output_text == r.output_text, got
        items = client.responses.input_items.list(r.id)
        assert [i.type for i in items.data] == ["message"], items
        client.responses.delete(r.id)
        try:
            client.responses.retrieve(r.id)
        except openai.NotFoundError as e:
            assert e.body["code"] == "not_found", e.body
        else:
            raise AssertionError("expected NotFoundError for a deleted response")

    @test
    def tools_on_the_embedded_model_required_named_and_streamed():
        # Required: the grammar holds the answer to a call of an offered tool.
        r = client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER, TIME], tool_choice="required", temperature=0, max_tokens=100,
        )
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c
        assert c.message.tool_calls, c.message
        for call in c.message.tool_calls:
            assert call.id.startswith("call_") and call.type == "function", call
            args = json.loads(call.function.arguments)
            assert call.function.name in ("get_weather", "get_time"), call
            assert ("city" in args) if call.function.name == "get_weather" else args["zone"] in ("UTC", "CET"), args
        # Named and streamed: the SDK puts the deltas back together.
        with client.chat.completions.stream(
            model="smollm2-135m", messages=[{"role": "user", "content": "What time is it in Berlin?"}],
            tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}},
            parallel_tool_calls=False, temperature=0, max_tokens=60,
        ) as stream:
            deltas = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
            final = stream.get_final_completion()
        calls = final.choices[0].message.tool_calls
        assert len(calls) == 1 and calls[0].function.name == "get_time", final
        assert json.loads(calls[0].function.arguments)["zone"] in ("UTC", "CET"), calls[0]
        assert deltas, "no argument deltas"
        assert final.choices[0].finish_reason == "tool_calls", final
        # The call and its result go back; the model answers (or calls again).
        history = [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [c.message.tool_calls[0].model_dump()]},
            {"role": "tool", "tool_call_id": c.message.tool_calls[0].id, "content": "Sunny, 18 C"},
        ]
        r = client.chat.completions.create(
            model="smollm2-135m", messages=history, tools=[WEATHER, TIME], temperature=0, max_tokens=60,
        )
        assert r.choices[0].finish_reason in ("stop", "tool_calls", "length"), r

    @test
    def responses_api_function_tools_on_the_embedded_model():
        flat = [{"type": "function", "name": t["function"]["name"],
                 "parameters": t["function"]["parameters"]} for t in (WEATHER, TIME)]
        r = client.responses.create(
            model="smollm2-135m", input="What is the weather in Paris?", tools=flat,
            tool_choice="required", max_output_tokens=100, temperature=0,
        )
        calls = [o for o in r.output if o.type == "function_call"]
        assert calls, r.output
        assert calls[0].name in ("get_weather", "get_time") and calls[0].call_id.startswith("call_"), calls
        json.loads(calls[0].arguments)
        events = list(client.responses.create(
            model="smollm2-135m", input="What time is it?", tools=flat,
            tool_choice={"type": "function", "name": "get_time"}, max_output_tokens=60,
            temperature=0, stream=True,
        ))
        deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        assert json.loads(deltas)["zone"] in ("UTC", "CET"), deltas

    @test
    def tools_passed_through_to_an_upstream_whole_and_streamed():
        r = client.chat.completions.create(
            model="fake-tools", messages=[{"role": "user", "content": "Weather and time?"}],
            tools=[WEATHER, TIME], tool_choice="auto",
        )
        got = [(t.function.name, t.function.arguments) for t in r.choices[0].message.tool_calls]
        assert got == [(c["name"], c["arguments"]) for c in TOOL_CALLS], got
        assert r.choices[0].finish_reason == "tool_calls", r
        with client.chat.completions.stream(
            model="fake-tools", messages=[{"role": "user", "content": "Weather and time?"}],
            tools=[WEATHER, TIME],
        ) as stream:
            final = stream.get_final_completion()
        got = [(t.function.name, t.function.arguments) for t in final.choices[0].message.tool_calls]
        assert got == [(c["name"], c["arguments"]) for c in TOOL_CALLS], got

    @test
    def a_tool_choice_naming_no_offered_function_is_refused():
        try:
            client.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": "hi"}],
                tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "launch_rocket"}},
            )
        except openai.BadRequestError as e:
            assert e.body["param"] == "tool_choice", e.body
            assert "launch_rocket" in e.body["message"], e.body
        else:
            raise AssertionError("expected BadRequestError for an unknown tool_choice function")

    @test
    def several_choices_from_the_embedded_model_whole_and_streamed():
        r = client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "Name a fruit."}],
            n=2, max_tokens=6, temperature=1.0, seed=3,
        )
        assert [c.index for c in r.choices] == [0, 1], r
        assert all(c.message.content and c.finish_reason in ("stop", "length") for c in r.choices), r
        assert r.usage.completion_tokens >= 2, r.usage
        texts = {0: "", 1: ""}
        finished = set()
        for chunk in client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "Name a fruit."}],
            n=2, max_tokens=6, temperature=1.0, stream=True,
        ):
            for c in chunk.choices:
                texts[c.index] += c.delta.content or ""
                if c.finish_reason:
                    finished.add(c.index)
        assert finished == {0, 1} and all(texts.values()), (texts, finished)
        r = client.completions.create(model="smollm2-135m", prompt="Once upon a time", n=2, max_tokens=4)
        assert [c.index for c in r.choices] == [0, 1], r
        try:
            client.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": "hi"}], n=9)
        except openai.BadRequestError as e:
            assert e.body["param"] == "n", e.body
        else:
            raise AssertionError("expected BadRequestError for n = 9")

    @test
    def logprobs_from_the_embedded_model_whole_streamed_and_legacy():
        r = client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=5, temperature=0, logprobs=True, top_logprobs=2,
        )
        content = r.choices[0].logprobs.content
        assert len(content) == r.usage.completion_tokens, (content, r.usage)
        assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 and t.bytes for t in content), content
        streamed = []
        for chunk in client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=5, temperature=0, logprobs=True, stream=True,
        ):
            for c in chunk.choices:
                if c.logprobs and c.logprobs.content:
                    streamed += c.logprobs.content
        assert [t.token for t in streamed] == [t.token for t in content], (streamed, content)
        legacy = client.completions.create(
            model="smollm2-135m", prompt="The sky is", max_tokens=4, temperature=0, logprobs=3)
        lp = legacy.choices[0].logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4, lp
        assert lp.text_offset[0] == 0 and all(len(t) == 3 for t in lp.top_logprobs), lp

    @test
    def authentication_error():
        bad = OpenAI(base_url=base + "/v1", api_key="sk-wrong-key-000", max_retries=0)
        try:
            bad.models.list()
        except openai.AuthenticationError as e:
            assert e.status_code == 401
            assert e.body["code"] == "invalid_api_key", e.body
        else:
            raise AssertionError("expected AuthenticationError")

    @test
    def not_found_error():
        try:
            client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.NotFoundError as e:
            assert e.status_code == 404
            assert e.body["code"] == "model_not_found", e.body
        else:
            raise AssertionError("expected NotFoundError")

    @test
    def bad_request_error():
        try:
            client.chat.completions.create(
                model="fake-chat", messages=[{"role": "user", "content": "hi"}], temperature=7
            )
        except openai.BadRequestError as e:
            assert e.status_code == 400
            assert e.body["param"] == "temperature", e.body
        else:
            raise AssertionError("expected BadRequestError")

    @test
    def rate_limit_error():
        limited = OpenAI(base_url=base + "/v1", api_key=LIMITED_KEY, max_retries=0)
        limited.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "1"}])
        try:
            limited.chat.completions.create(
                model="fake-chat", messages=[{"role": "user", "content": "2"}]
            )
        except openai.RateLimitError as e:
            assert e.status_code == 429
            assert int(e.response.headers["retry-after"]) >= 1
        else:
            raise AssertionError("expected RateLimitError")

    return harness.run("sdk", tests, procs)

if __name__ == "__main__":
    sys.exit(main())
