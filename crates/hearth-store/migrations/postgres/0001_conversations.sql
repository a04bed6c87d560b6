-- Postgres: the same as the SQLite migration of this number (the shared SQL subset).
-- Conversations and their messages. Written in the SQL that SQLite and Postgres
-- share: TEXT ids (UUIDs), BIGINT unix-millisecond times, no AUTOINCREMENT.
CREATE TABLE conversations (
    id            TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    model         TEXT,
    system_prompt TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    -- Set by delete; cleared by undo; rows deleted longer ago are purged.
    deleted_at    BIGINT
);

-- The sidebar: live conversations, newest first, paged by (updated_at, id).
CREATE INDEX conversations_recent ON conversations (deleted_at, updated_at DESC, id DESC);

CREATE TABLE messages (
    id                TEXT PRIMARY KEY,
    conversation_id   TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- Position in the conversation, from 0; unique so that two writers cannot interleave.
    seq               BIGINT NOT NULL,
    role              TEXT NOT NULL,
    content           TEXT NOT NULL,
    model             TEXT,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    -- Milliseconds to the first token and for the whole reply.
    ttft_ms           BIGINT,
    duration_ms       BIGINT,
    -- stop | length | stopped (by the user or a disconnect) | error | interrupted
    -- (the server went away mid-reply); NULL while a reply is streaming.
    finish_reason     TEXT,
    created_at        BIGINT NOT NULL,
    UNIQUE (conversation_id, seq)
);
