"""Seeds a Hearth SQLite database for the UI benchmark: many conversations, and
one long one. Writes through sqlite3 while the server runs (WAL allows it).

usage: seed.py DB CONVERSATIONS LONG_MESSAGES  -> prints the long conversation's id
"""
import sqlite3
import sys
import time
import uuid

db, n_convs, n_long = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = sqlite3.connect(db, timeout=30)
now = int(time.time() * 1000)

REPLY = """Here is one way to do it:

```python
def add(a: int, b: int) -> int:
    \"\"\"Adds two numbers.\"\"\"
    return a + b  # simple
```

- It takes **two** integers.
- It returns their `sum`.

| input | output |
|---|---|
| 1, 2 | 3 |
"""

with con:
    rows = []
    for i in range(n_convs):
        at = now - (i + 10) * 60_000
        rows.append((str(uuid.uuid4()), f"Seeded conversation {i}", None, None, at, at))
    con.executemany(
        "INSERT INTO conversations (id, title, model, system_prompt, created_at, updated_at) VALUES (?,?,?,?,?,?)",
        rows,
    )
    long_id = str(uuid.uuid4())
    con.execute(
        "INSERT INTO conversations (id, title, model, system_prompt, created_at, updated_at) VALUES (?,?,?,?,?,?)",
        (long_id, f"Long conversation ({n_long} messages)", None, None, now, now),
    )
    msgs = []
    for s in range(n_long):
        user = s % 2 == 0
        content = f"Question {s // 2}: how do I add two numbers in Python?" if user else REPLY
        msgs.append((
            str(uuid.uuid4()), long_id, s, "user" if user else "assistant", content,
            None if user else "smollm2-135m", None if user else 40, None if user else 60,
            None if user else 30, None if user else 900, None if user else "stop", now - (n_long - s) * 1000,
        ))
    con.executemany(
        "INSERT INTO messages (id, conversation_id, seq, role, content, model, prompt_tokens, completion_tokens, "
        "ttft_ms, duration_ms, finish_reason, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        msgs,
    )
print(long_id)
