import { useCallback, useEffect, useReducer, useRef, useState } from 'react';
import { ApiError } from '../api';
import { followJob, jobsApi, type Job } from './api';
import { JobDetail, type Busy } from './JobDetail';
import { EMPTY, applyEvent, isBehind, wantsRefresh, type LiveJob } from './live';

export interface JobViewProps {
  id: string;
  /** Bumped when the API key changes: read the job again with it. */
  keyVersion: number;
  /** The job's row changed (its status): for the list. */
  onJob: (job: Job) => void;
  onDeleted: (id: string) => void;
  onError: (e: unknown) => void;
  onMenu: () => void;
}

const REFRESH_TRIES = 5;

/** One job, followed live: its event stream, with the stored steps read when one ends. */
export function JobView({ id, keyVersion, onJob, onDeleted, onError, onMenu }: JobViewProps) {
  const [live, dispatch] = useReducer(applyEvent, EMPTY);
  const [missing, setMissing] = useState<string | null>(null);
  const [busy, setBusy] = useState<Busy>(null);
  // Bumped to follow the job again once it was sent back to the queue.
  const [round, setRound] = useState(0);
  const current = useRef<LiveJob>(live);
  current.current = live;
  const refreshing = useRef({ busy: false, again: false });

  // A step ended: its output, findings, files are in the stored job. One read at a
  // time; a read that comes back older than the stream asks again.
  const refresh = useCallback(
    async (signal: AbortSignal) => {
      const r = refreshing.current;
      if (r.busy) {
        r.again = true;
        return;
      }
      r.busy = true;
      try {
        let tries = 0;
        do {
          r.again = false;
          const view = await jobsApi.get(id, signal);
          if (signal.aborted) return;
          const behind = isBehind(current.current, view);
          dispatch({ type: 'refresh', view });
          if (behind && ++tries < REFRESH_TRIES) {
            r.again = true;
            await new Promise((ok) => setTimeout(ok, 200));
          }
        } while (r.again && !signal.aborted);
      } catch {
        /* the stream goes on; the next step's end reads it again */
      } finally {
        r.busy = false;
      }
    },
    [id],
  );

  useEffect(() => {
    const ac = new AbortController();
    setMissing(null);
    followJob(
      id,
      (e) => {
        dispatch(e);
        if (wantsRefresh(e)) refresh(ac.signal);
      },
      ac.signal,
    ).catch((e) => {
      if (ac.signal.aborted) return;
      if (e instanceof ApiError && (e.status === 404 || e.status === 400)) setMissing(e.message);
      else onError(e);
    });
    return () => ac.abort();
    // onError is stable enough; following again on its change would reconnect for nothing.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [id, round, keyVersion, refresh]);

  const v = live.view;
  useEffect(() => {
    if (v) onJob(v);
    // Only the row's fields matter to the list.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [v?.status, v?.step, v?.cancel_requested, v?.error]);

  const act = useCallback(
    async (what: Exclude<Busy, null>, call: () => Promise<Job | unknown>, again: boolean): Promise<boolean> => {
      setBusy(what);
      try {
        const job = await call();
        // The list hears of it from the effect above, once the row is applied.
        if (job && typeof job === 'object' && 'status' in job) dispatch({ type: 'row', job: job as Job });
        if (again) setRound((n) => n + 1);
        return true;
      } catch (e) {
        onError(e);
        return false;
      } finally {
        setBusy(null);
      }
    },
    [onError],
  );

  if (missing) {
    return (
      <main className="chat job">
        <header className="chat-head">
          <button type="button" className="icon menu" aria-label="Jobs" onClick={onMenu}>
            ☰
          </button>
          <h1 className="chat-title">Job not found</h1>
        </header>
        <div className="placeholder">That job does not exist (it may have been deleted).</div>
      </main>
    );
  }
  if (!v || v.id !== id) {
    return (
      <main className="chat job">
        <header className="chat-head">
          <button type="button" className="icon menu" aria-label="Jobs" onClick={onMenu}>
            ☰
          </button>
          <h1 className="chat-title">Job</h1>
        </header>
        <div className="placeholder">Loading…</div>
      </main>
    );
  }
  return (
    <JobDetail
      live={{ ...live, view: v }}
      busy={busy}
      onMenu={onMenu}
      onError={onError}
      onCancel={() => act('cancel', () => jobsApi.cancel(id), false)}
      onRetry={() => act('retry', () => jobsApi.retry(id), true)}
      onRunCode={(code) => act('code', () => jobsApi.editCode(id, code), true)}
      onDelete={() =>
        act('delete', () => jobsApi.remove(id), false).then((ok) => {
          if (ok) onDeleted(id);
        })
      }
    />
  );
}
