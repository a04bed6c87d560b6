import { useEffect, useRef, useState } from 'react';
import { ApiError } from '../api';
import { describeJobError, jobsApi, type Job } from './api';
import { formatBytes } from './format';

/** Past this the preview is skipped (the server still says whether it takes the file). */
const PREVIEW_MAX_BYTES = 40_000_000;
const EXAMPLES = ['Plot these numbers', 'Extract the table as CSV', 'Re-create this chart'];

/** The file as a `data:` URL (the page's CSP shows `data:` images, not `blob:` ones). */
export function readPreview(file: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    if (!file.type.startsWith('image/') || file.size > PREVIEW_MAX_BYTES) {
      reject(new Error('no preview'));
      return;
    }
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

export interface NewJobProps {
  onCreated: (job: Job) => void;
  /** A refusal the page handles (the server unreachable, a key needed). */
  onError: (e: unknown) => void;
  onMenu: () => void;
}

/** The upload form: an image (picked, dropped or pasted) with a preview, and the instruction. */
export function NewJob({ onCreated, onError, onMenu }: NewJobProps) {
  const [file, setFile] = useState<File | null>(null);
  const [preview, setPreview] = useState<string | null>(null);
  const [noPreview, setNoPreview] = useState(false);
  const [prompt, setPrompt] = useState('');
  const [drag, setDrag] = useState(false);
  const [sending, setSending] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const picker = useRef<HTMLInputElement>(null);
  const chosen = useRef(0);

  const choose = (f: File | null | undefined) => {
    if (!f) return;
    const n = ++chosen.current;
    setFile(f);
    setError(null);
    setPreview(null);
    setNoPreview(false);
    readPreview(f).then(
      (url) => n === chosen.current && setPreview(url),
      () => n === chosen.current && setNoPreview(true),
    );
  };

  const clear = () => {
    chosen.current += 1;
    setFile(null);
    setPreview(null);
    setNoPreview(false);
    setError(null);
  };

  // An image pasted anywhere on the page is taken too (a screenshot in the clipboard).
  useEffect(() => {
    const onPaste = (e: ClipboardEvent) => {
      const f = Array.from(e.clipboardData?.files ?? []).find((x) => x.type.startsWith('image/'));
      if (f) {
        e.preventDefault();
        choose(f);
      }
    };
    window.addEventListener('paste', onPaste);
    return () => window.removeEventListener('paste', onPaste);
  }, []);

  const submit = async () => {
    if (!file || sending) return;
    setSending(true);
    setError(null);
    try {
      onCreated(await jobsApi.submit(file, prompt, file.name));
    } catch (e) {
      if (e instanceof ApiError && (e.status === 0 || e.status === 401)) onError(e);
      setError(describeJobError(e));
      setSending(false);
    }
  };

  return (
    <main className="chat job new-job-page">
      <header className="chat-head">
        <button type="button" className="icon menu" aria-label="Jobs" onClick={onMenu}>
          ☰
        </button>
        <h1 className="chat-title">New job</h1>
      </header>
      <div className="job-scroll">
        <form
          className="job-page new-job"
          onSubmit={(e) => {
            e.preventDefault();
            submit();
          }}
        >
          <p className="lead">
            An image in (a photo of a whiteboard table, a chart, a scanned form), working Python out: read by the vision model, written by the code
            model, checked by ruff and bandit, and run in the sandbox with no network. Its charts and files come back here.
          </p>
          <div
            className={`drop${drag ? ' drag' : ''}${file ? ' has-file' : ''}`}
            data-testid="drop"
            onDragOver={(e) => {
              e.preventDefault();
              if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
              setDrag(true);
            }}
            onDragLeave={() => setDrag(false)}
            onDrop={(e) => {
              e.preventDefault();
              setDrag(false);
              choose(e.dataTransfer?.files?.[0]);
            }}
          >
            <input
              ref={picker}
              type="file"
              accept="image/png,image/jpeg,image/webp,image/gif"
              aria-label="Image file"
              hidden
              onChange={(e) => {
                choose(e.currentTarget.files?.[0]);
                e.currentTarget.value = '';
              }}
            />
            {file ? (
              <div className="chosen">
                {preview ? <img className="preview" src={preview} alt={`Preview of ${file.name}`} onError={() => setNoPreview(true)} /> : null}
                {noPreview ? <div className="no-preview">No preview: the browser cannot show this file as an image.</div> : null}
                <div className="chosen-meta">
                  <span className="chosen-name">{file.name}</span> <span className="muted">{formatBytes(file.size)}</span>
                  <button type="button" className="link" onClick={() => picker.current?.click()}>
                    Change
                  </button>
                  <button type="button" className="link" onClick={clear}>
                    Remove
                  </button>
                </div>
              </div>
            ) : (
              <div className="drop-empty">
                <button type="button" className="primary" onClick={() => picker.current?.click()}>
                  Choose an image
                </button>
                <span>or drop it here, or paste it</span>
                <span className="muted">PNG, JPEG, WebP or GIF</span>
              </div>
            )}
          </div>
          <label className="instruction">
            <span>Instruction (optional)</span>
            <textarea
              aria-label="Instruction"
              rows={3}
              placeholder="What should the code do? e.g. plot these numbers as a bar chart"
              value={prompt}
              onChange={(e) => setPrompt(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
                  e.preventDefault();
                  submit();
                }
              }}
            />
          </label>
          <div className="examples">
            {EXAMPLES.map((x) => (
              <button key={x} type="button" className="chip" onClick={() => setPrompt(x)}>
                {x}
              </button>
            ))}
          </div>
          {error ? (
            <p className="form-error" role="alert">
              {error}
            </p>
          ) : null}
          <div className="form-actions">
            <button type="submit" className="primary" disabled={!file || sending}>
              {sending ? 'Uploading…' : 'Run job'}
            </button>
          </div>
        </form>
      </div>
    </main>
  );
}
