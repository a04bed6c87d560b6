-- Tokens each API key used per budget period (`[[keys]] budget_tokens`): the key's
-- name, the period's start (UTC, milliseconds), and the tokens settled in it.
-- One row per key and period; a request adds to it in one statement.
CREATE TABLE key_usage (
    key TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    PRIMARY KEY (key, period_start)
);
