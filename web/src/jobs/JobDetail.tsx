import { useEffect, useRef, useState } from 'react';
import type { JobStep, JobView } from './api';
import { isFinal } from './api';
import { Results, JobImage } from './JobFiles';
import { failureTitle, formatMs, sentence, statusText, stepName } from './format';
import type { LiveJob } from './live';
import { StepView } from './StepView';

const NONE: string[] = [];

/** The action in flight, if any. */
export type Busy = 'cancel' | 'retry' | 'code' | 'delete' | null;

export interface JobDetailProps {
  live: LiveJob & { view: JobView };
  busy: Busy;
  onCancel: () => void;
  onRetry: () => void;
  /** Runs the user's code; true when the server took it. */
  onRunCode: (code: string) => Promise<boolean>;
  onDelete: () => void;
  onError: (e: unknown) => void;
  onMenu: () => void;
}

/** The script of the last code attempt that wrote one. */
export function lastCode(steps: JobStep[]): string | null {
  for (let i = steps.length - 1; i >= 0; i--) {
    const s = steps[i];
    if (s.kind === 'code' && s.status === 'succeeded' && s.output) return s.output;
  }
  return null;
}

function CodeEditor({ initial, busy, onRun, onClose }: { initial: string; busy: boolean; onRun: (code: string) => void; onClose: () => void }) {
  const [draft, setDraft] = useState(initial);
  const box = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    box.current?.focus();
    box.current?.scrollIntoView?.({ block: 'nearest' });
  }, []);
  const run = () => {
    if (draft.trim() && !busy) onRun(draft);
  };
  return (
    <form
      className="code-editor"
      aria-label="Edit code"
      onSubmit={(e) => {
        e.preventDefault();
        run();
      }}
    >
      <h2>Edit the code and run it</h2>
      <p className="muted">
        Your script goes through the critic and the sandbox like the model's: the image is in <code>/input</code>, results go to{' '}
        <code>/output</code>, no network.
      </p>
      <textarea
        ref={box}
        aria-label="Code to run"
        spellCheck={false}
        value={draft}
        rows={Math.min(30, Math.max(8, draft.split('\n').length + 1))}
        onChange={(e) => setDraft(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            run();
          } else if (e.key === 'Tab' && !e.shiftKey) {
            // Python is indented: Tab indents instead of leaving the box.
            e.preventDefault();
            const t = e.currentTarget;
            const { selectionStart: a, selectionEnd: b } = t;
            const next = `${draft.slice(0, a)}    ${draft.slice(b)}`;
            setDraft(next);
            requestAnimationFrame(() => t.setSelectionRange(a + 4, a + 4));
          } else if (e.key === 'Escape') {
            e.stopPropagation();
            onClose();
          }
        }}
      />
      <div className="editor-actions">
        <button type="submit" className="primary" disabled={!draft.trim() || busy}>
          {busy ? 'Sending…' : 'Run this code'}
        </button>
        <button type="button" onClick={onClose}>
          Cancel
        </button>
        <span className="muted">Ctrl+Enter runs it</span>
      </div>
    </form>
  );
}

export function JobDetail({ live, busy, onCancel, onRetry, onRunCode, onDelete, onError, onMenu }: JobDetailProps) {
  const j = live.view;
  const [editing, setEditing] = useState(false);
  const [confirmDelete, setConfirmDelete] = useState(false);
  useEffect(() => {
    if (!confirmDelete) return;
    const t = setTimeout(() => setConfirmDelete(false), 4000);
    return () => clearTimeout(t);
  }, [confirmDelete]);

  const ended = isFinal(j.status);
  const code = lastCode(j.steps);
  const input = j.files.find((f) => f.role === 'input');
  const artifacts = j.files.filter((f) => f.role === 'artifact');
  const canEdit = ended && code != null;
  const editButton = canEdit ? (
    <button type="button" onClick={() => setEditing(true)} disabled={editing || busy != null}>
      Edit code and run
    </button>
  ) : null;
  const retryButton = (
    <button type="button" className="primary" onClick={onRetry} disabled={busy != null}>
      {busy === 'retry' ? 'Retrying…' : 'Retry'}
    </button>
  );
  const logsOf = (s: JobStep) => live.logs[s.id] ?? NONE;
  const criticLogs = (s: JobStep) => {
    const c = j.steps.find((x) => x.kind === 'critic' && x.attempt === s.attempt && x.seq > s.seq);
    return c ? logsOf(c) : NONE;
  };
  // The steps' own time: a retried job's wait before its retry is not work.
  const took = j.steps.some((s) => s.duration_ms != null) ? j.steps.reduce((n, s) => n + (s.duration_ms ?? 0), 0) : null;

  return (
    <main className="chat job" data-job-id={j.id} data-status={j.status}>
      <header className="chat-head">
        <button type="button" className="icon menu" aria-label="Jobs" onClick={onMenu}>
          ☰
        </button>
        <h1 className="chat-title" title={j.prompt}>
          {j.prompt || 'Job without an instruction'}
        </h1>
        <span className={`job-status job-status-${j.status}`} data-testid="job-status">
          {statusText(j)}
        </span>
        {!ended ? (
          <button type="button" onClick={onCancel} disabled={busy != null || j.cancel_requested}>
            {j.cancel_requested || busy === 'cancel' ? 'Cancelling…' : 'Cancel'}
          </button>
        ) : null}
        {j.status !== 'running' ? (
          <button
            type="button"
            className={confirmDelete ? 'danger' : undefined}
            onClick={() => (confirmDelete ? onDelete() : setConfirmDelete(true))}
            disabled={busy != null}
          >
            {confirmDelete ? 'Delete for good?' : 'Delete'}
          </button>
        ) : null}
      </header>
      <div className="job-scroll">
        <div className="job-page">
          {j.status === 'failed' ? (
            <div className="job-failure" role="alert">
              <h2>{failureTitle(j)}</h2>
              {j.error ? <p>{sentence(j.error)}</p> : null}
              <p className="muted">
                Retry runs it again from the {j.step ? stepName(j.step).toLowerCase() : 'failed'} step
                {j.step === 'critic' || j.step === 'run' ? ', with one more repair by the code model' : ''}
                {canEdit ? '; or fix the code yourself and run it.' : '.'}
              </p>
              <div className="job-actions">
                {retryButton}
                {editButton}
              </div>
            </div>
          ) : null}
          {j.status === 'cancelled' ? (
            <div className="job-cancelled" role="status">
              <p>Cancelled{j.step ? ` at the ${stepName(j.step).toLowerCase()} step` : ''}.</p>
              <div className="job-actions">
                {retryButton}
                {editButton}
              </div>
            </div>
          ) : null}
          {j.status === 'succeeded' ? (
            <div className="job-done" role="status">
              <p>
                Done{took != null ? ` in ${formatMs(took)}` : ''}. {artifacts.length === 0 ? 'The script wrote no files.' : `${artifacts.length} file${artifacts.length === 1 ? '' : 's'}.`}
              </p>
              <div className="job-actions">{editButton}</div>
            </div>
          ) : null}
          {editing && code != null ? (
            <CodeEditor
              initial={code}
              busy={busy === 'code'}
              onClose={() => setEditing(false)}
              onRun={async (c) => {
                if (await onRunCode(c)) setEditing(false);
              }}
            />
          ) : null}
          <Results files={j.files} onError={onError} />
          <section className="job-input" aria-label="Input">
            {input ? <JobImage url={input.url} alt="The uploaded image" className="input-image" /> : null}
            <div className="job-instruction">
              <h2>Instruction</h2>
              <p className="plain">{j.prompt || 'None: the code does what the image suggests.'}</p>
              <p className="muted">
                {j.image_type.toUpperCase()} image · submitted {new Date(j.created_at).toLocaleString()}
              </p>
            </div>
          </section>
          <section className="steps" aria-label="Steps">
            <h2>Steps</h2>
            {j.steps.length === 0 ? (
              <p className="muted">{j.status === 'queued' ? 'Waiting for a worker…' : 'No step ran.'}</p>
            ) : (
              j.steps.map((s) => <StepView key={s.id} step={s} steps={j.steps} logs={logsOf(s)} criticLogs={s.kind === 'code' ? criticLogs(s) : NONE} />)
            )}
            {j.status === 'queued' && j.steps.length > 0 ? <p className="muted">Queued: it goes on when a worker is free.</p> : null}
          </section>
        </div>
      </div>
    </main>
  );
}
