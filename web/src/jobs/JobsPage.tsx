// The Jobs page: the caller's jobs in the sidebar (their status kept current), and
// either the upload form or one job, followed live. Loaded only when opened, so
// the chat's first load carries none of it.

import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError } from '../api';
import type { Notice } from '../components/Notices';
import { SidebarHead, type View } from '../components/SidebarHead';
import { describeJobError, isFinal, jobsApi, type Job } from './api';
import { JobList } from './JobList';
import { JobView } from './JobView';
import { NewJob } from './NewJob';
import './jobs.css';

const PAGE = 50;
/** While a listed job is queued or running, the list is read again this often. */
const LIST_EVERY_MS = 2500;

export interface JobsPageProps {
  /** The open job; null: the upload form. */
  jobId: string | null;
  keyVersion: number;
  status: { level: 'ok' | 'warn' | 'down'; text: string };
  /** Whether the caller's key is an admin key (the Keys page is offered). */
  admin?: boolean;
  onView: (v: View) => void;
  onOpen: (id: string | null) => void;
  onMenu: () => void;
  notify: (n: Omit<Notice, 'id'>) => number;
  /** The app's handler of errors it has a place for (offline, a key needed). */
  fail: (e: unknown) => void;
}

/** Puts `fresh` (a first page) over `list`: rows updated, new ones on top, older pages kept. */
export function mergeJobs(list: Job[], fresh: Job[]): Job[] {
  const byId = new Map(fresh.map((j) => [j.id, j]));
  const known = new Set(list.map((j) => j.id));
  const added = fresh.filter((j) => !known.has(j.id));
  return [...added, ...list.map((j) => byId.get(j.id) ?? j)];
}

export default function JobsPage(p: JobsPageProps) {
  const [jobs, setJobs] = useState<Job[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const req = useRef(0);
  const { fail, notify, onOpen } = p;

  const report = useCallback(
    (e: unknown) => {
      if ((e as Error)?.name === 'AbortError') return;
      if (e instanceof ApiError && (e.status === 0 || e.status === 401)) fail(e);
      else notify({ kind: 'error', text: describeJobError(e) });
    },
    [fail, notify],
  );

  const load = useCallback(
    async (from: string | null) => {
      const n = ++req.current;
      setLoading(true);
      try {
        const page = await jobsApi.list({ cursor: from, limit: PAGE });
        if (n !== req.current) return;
        setJobs((js) => (from ? [...js, ...page.data.filter((j) => !js.some((x) => x.id === j.id))] : page.data));
        setCursor(page.next_cursor);
      } catch (e) {
        if (n === req.current) report(e);
      } finally {
        if (n === req.current) setLoading(false);
      }
    },
    [report],
  );

  useEffect(() => {
    load(null);
  }, [load, p.keyVersion]);

  // Live status in the list: read the first page again while something is under way.
  const active = jobs.some((j) => !isFinal(j.status));
  useEffect(() => {
    if (!active) return;
    const t = setInterval(() => {
      if (document.hidden) return;
      jobsApi
        .list({ limit: PAGE })
        .then((page) => setJobs((js) => mergeJobs(js, page.data)))
        .catch(() => undefined);
    }, LIST_EVERY_MS);
    return () => clearInterval(t);
  }, [active]);

  const onJob = useCallback((job: Job) => {
    setJobs((js) => js.map((j) => (j.id === job.id ? { ...j, status: job.status, step: job.step, error: job.error, error_code: job.error_code, cancel_requested: job.cancel_requested } : j)));
  }, []);

  const onCreated = useCallback(
    (job: Job) => {
      setJobs((js) => [job, ...js.filter((j) => j.id !== job.id)]);
      onOpen(job.id);
    },
    [onOpen],
  );

  const onDeleted = useCallback(
    (id: string) => {
      setJobs((js) => js.filter((j) => j.id !== id));
      onOpen(null);
      notify({ kind: 'info', text: 'The job was deleted.', ttl: 5000 });
    },
    [onOpen, notify],
  );

  return (
    <>
      <nav className="sidebar" aria-label="Jobs">
        <SidebarHead status={p.status} view="jobs" onView={p.onView} admin={p.admin} />
        <button type="button" className="new-chat primary" onClick={() => onOpen(null)}>
          + New job
        </button>
        <JobList jobs={jobs} activeId={p.jobId} loading={loading} hasMore={cursor != null} onSelect={onOpen} onMore={() => load(cursor)} />
      </nav>
      {p.jobId ? (
        <JobView key={p.jobId} id={p.jobId} keyVersion={p.keyVersion} onJob={onJob} onDeleted={onDeleted} onError={report} onMenu={p.onMenu} />
      ) : (
        <NewJob onCreated={onCreated} onError={report} onMenu={p.onMenu} />
      )}
    </>
  );
}
