-- Postgres: the same as the SQLite migration of this number (the shared SQL subset).
-- Every conversation has an owner: the name of the API key that made it, or
-- 'anonymous' on a server without keys (and for conversations made before owners
-- existed). Reads and deletes are scoped to it; an admin key sees all.
ALTER TABLE conversations ADD COLUMN owner TEXT NOT NULL DEFAULT 'anonymous';
CREATE INDEX conversations_owner_recent ON conversations (owner, deleted_at, updated_at DESC, id DESC);

-- A streaming reply is leased by the process writing it, which renews the lease
-- while it writes. A reply whose lease ran out (its process died) is marked
-- interrupted by whichever process sweeps next; a reply another live process is
-- writing is left alone.
ALTER TABLE messages ADD COLUMN lease_owner TEXT;
ALTER TABLE messages ADD COLUMN lease_until BIGINT;
