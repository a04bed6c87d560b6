"""Renders each chat template here as Hugging Face's `apply_chat_template` does
(jinja2's sandbox, trim_blocks and lstrip_blocks, its tojson, raise_exception,
strftime_now), for one conversation (rendered/conversation.json), into
rendered/<template>.txt (and, for a template that reads `enable_thinking`, with
it false into rendered/<template>.no-think.txt): what `src/jinja.rs`'s test
compares Hearth's rendering with, byte for byte. strftime_now is fixed at 1722000000 (2024-07-26 13:20 UTC).

    .venv-objects/bin/python crates/hearth-engine/tests/templates/render_hf.py

(any Python with jinja2 3.x)."""
import json
import pathlib
import time

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = pathlib.Path(__file__).parent
NOW = 1722000000


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda f: time.strftime(f, time.gmtime(NOW))
    given = json.loads((HERE / "rendered" / "conversation.json").read_text())
    for path in sorted(HERE.glob("*.jinja")):
        source = path.read_text()
        template = env.from_string(source)
        # A template that reads `enable_thinking` (Qwen3) is rendered a second
        # time with it false, as `chat_template_kwargs` passes it.
        for suffix, kwargs in [("", {}), (".no-think", {"enable_thinking": False})]:
            if kwargs and "enable_thinking" not in source:
                continue
            out = template.render(
                messages=given["messages"], tools=given["tools"],
                add_generation_prompt=True, bos_token="<s>", eos_token="</s>", **kwargs)
            (HERE / "rendered" / f"{path.stem}{suffix}.txt").write_text(out)
            print(f"{path.stem}{suffix}: {len(out)} characters")


if __name__ == "__main__":
    main()
