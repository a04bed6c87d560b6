-- Postgres: the same as the SQLite migration of this number (the shared SQL subset).
-- Agent jobs (hearth-jobs): a job row is the single source of truth for its state;
-- every step it ran is kept (each code attempt, critic and run); the files it
-- uploaded and made are addressed by SHA-256 (bytes under data_dir/files), never by
-- the client's file name.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    -- queued | running | succeeded | failed | cancelled
    status       TEXT NOT NULL,
    -- The step it is at (vision, plan, code, critic, run) while running, and the
    -- step it ended at when it failed or was cancelled.
    step         TEXT,
    prompt       TEXT NOT NULL,
    -- The uploaded image: its digest (a row of `files`) and detected type.
    image_sha256 TEXT NOT NULL,
    image_type   TEXT NOT NULL,
    -- Why it failed, in plain words, and a short code (timeout, memory, vision, ...).
    error        TEXT,
    error_code   TEXT,
    -- Set by cancel; the worker running the job (in any process) stops it.
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    -- A running job is leased by the worker running it, which renews the lease;
    -- a job whose lease ran out (its process died) goes back to the queue.
    lease_owner  TEXT,
    lease_until  BIGINT,
    created_at   BIGINT NOT NULL,
    -- When it last joined the queue (created, or retried): the worker's order.
    queued_at    BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    started_at   BIGINT,
    finished_at  BIGINT
);
-- The worker's queue (arrival order) and the UI's list (newest first).
CREATE INDEX jobs_queue ON jobs (status, queued_at, id);
CREATE INDEX jobs_owner_recent ON jobs (owner, created_at DESC, id DESC);

CREATE TABLE job_steps (
    id                TEXT PRIMARY KEY,
    job_id            TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- Position in the job, from 0.
    seq               BIGINT NOT NULL,
    -- vision | plan | code | critic | run
    kind              TEXT NOT NULL,
    -- 1 for the first code/critic/run, +1 for each repair.
    attempt           BIGINT NOT NULL,
    -- running | succeeded | failed | cancelled | interrupted
    status            TEXT NOT NULL,
    input             TEXT NOT NULL,
    output            TEXT,
    -- JSON: the critic's findings, the sandbox's outcome and usage, ...
    detail            TEXT,
    model             TEXT,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    started_at        BIGINT NOT NULL,
    finished_at       BIGINT,
    duration_ms       BIGINT,
    UNIQUE (job_id, seq)
);

-- Content-addressed bytes: one row per distinct content.
CREATE TABLE files (
    sha256       TEXT PRIMARY KEY,
    size         BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

-- A job's files: its input image and the artifacts its run wrote to /output.
CREATE TABLE job_files (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- input | artifact
    role       TEXT NOT NULL,
    -- For an artifact, its path under /output; for the input, `input.<ext>`.
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL REFERENCES files (sha256),
    size       BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    -- The run step that wrote it.
    step_id    TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, role, name)
);
