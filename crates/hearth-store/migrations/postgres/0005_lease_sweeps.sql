-- Postgres only (several replicas sweep every few seconds): the sweeps of expired
-- leases read only the rows that can hold one, not every message and job.
CREATE INDEX messages_streaming ON messages (lease_until) WHERE finish_reason IS NULL;
CREATE INDEX jobs_running ON jobs (lease_until) WHERE status = 'running';
