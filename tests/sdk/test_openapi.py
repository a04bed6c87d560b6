"""Schemathesis against Hearth's own /openapi.json: for every documented
operation, generated requests (a bounded number, a fixed seed) must never get a
5xx, and every answer must match the document (status code, content type, body
schema). Hearth serves the fake upstream as its chat model (fast answers) and
the embedded all-MiniLM-L6-v2 for embeddings.

Usage: HEARTH_BIN=... FAKE_UPSTREAM_BIN=... HEARTH_EMBEDDING_MODEL=... SCHEMATHESIS=... python test_openapi.py
"""

import os
import subprocess
import sys

import harness

EXAMPLES = os.environ.get("HEARTH_OPENAPI_EXAMPLES", "20")


def main():
    procs = []
    upstream = harness.start_fake_upstream(procs)
    base, _ = harness.start_hearth(
        procs,
        f"""
[[models]]
name = "fake-chat"
backend = "upstream"
base_url = "{upstream}"

[[models]]
name = "minilm"
kind = "embedding"
path = "{os.environ["HEARTH_EMBEDDING_MODEL"]}"
""",
        "hearth-openapi-",
    )
    try:
        run = subprocess.run(
            [
                os.environ["SCHEMATHESIS"], "run", base + "/openapi.json",
                "--max-examples", EXAMPLES, "--seed", "1",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--request-timeout", "60",
            ],
            timeout=900,
        )
    finally:
        harness.stop(procs)
    print(f"openapi: schemathesis exited {run.returncode}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
