-- Postgres: the same as the SQLite migration of this number (the shared SQL subset).
-- Finding the files no job refers to any more (after a job is deleted, or an
-- artifact is replaced by a rerun), so their bytes can be removed: by digest.
CREATE INDEX job_files_sha256 ON job_files (sha256);
