import { memo, useEffect, useRef, useState } from 'react';
import type { Message } from '../api';
import { Markdown, copyText } from '../markdown';

const ENDINGS: Record<string, string> = {
  stopped: 'Stopped',
  error: 'Cut short by an error',
  interrupted: 'Interrupted (the server restarted)',
  length: 'Reached the token limit',
};

/** Milliseconds as the whole seconds a summary shows (at least 1). */
const seconds = (ms: number) => Math.max(1, Math.round(ms / 1000));

/**
 * A reasoning model's thinking, as plain text (it is model output: never markup). Open
 * while the model thinks; closed once the answer starts, which the reader can reopen.
 * How long it thought: as this page saw it, else as the server stored it (`ms`; replies
 * stored before it kept that say "Thoughts").
 */
function Reasoning({ text, thinking, ms }: { text: string; thinking: boolean; ms?: number | null }) {
  const [open, setOpen] = useState(thinking);
  const since = useRef<number | null>(thinking ? Date.now() : null);
  const [seen, setSeen] = useState<number | null>(null);
  const secs = seen ?? (ms != null ? seconds(ms) : null);
  useEffect(() => {
    if (thinking) {
      since.current ??= Date.now();
      setOpen(true);
    } else if (since.current != null) {
      setSeen(seconds(Date.now() - since.current));
      since.current = null;
      setOpen(false);
    }
  }, [thinking]);
  return (
    <details className="reasoning" open={open} onToggle={(e) => setOpen(e.currentTarget.open)}>
      <summary>{thinking ? 'Thinking…' : secs != null ? `Thought for ${secs} s` : 'Thoughts'}</summary>
      <div className="reasoning-text">{text}</div>
    </details>
  );
}

export interface MessageViewProps {
  m: Message;
  streaming: boolean;
  omitted: boolean;
  canRegenerate: boolean;
  busy: boolean;
  onRegenerate: () => void;
  onEdit: (m: Message, content: string) => void;
}

export const MessageView = memo(function MessageView({ m, streaming, omitted, canRegenerate, busy, onRegenerate, onEdit }: MessageViewProps) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(m.content);
  const ending = m.finish_reason ? ENDINGS[m.finish_reason] : undefined;
  const cls = `msg msg-${m.role}${omitted ? ' omitted' : ''}${streaming ? ' streaming' : ''}`;
  if (editing) {
    return (
      <div className={cls} data-role={m.role}>
        <textarea className="edit-box" aria-label="Edit message" value={draft} autoFocus rows={4} onChange={(e) => setDraft(e.target.value)} />
        <div className="msg-actions visible">
          <button
            type="button"
            className="primary"
            disabled={!draft.trim() || busy}
            onClick={() => {
              setEditing(false);
              onEdit(m, draft);
            }}
          >
            Save &amp; send
          </button>
          <button type="button" onClick={() => setEditing(false)}>
            Cancel
          </button>
        </div>
      </div>
    );
  }
  return (
    <div className={cls} data-id={m.id} data-role={m.role} data-finish={m.finish_reason ?? (streaming ? 'streaming' : '')}>
      {omitted ? <div className="omitted-label">Left out of the model's context</div> : null}
      {m.role === 'assistant' && m.reasoning ? <Reasoning text={m.reasoning} thinking={streaming && !m.content} ms={m.reasoning_ms} /> : null}
      <div className="msg-body">
        {m.role === 'user' ? <div className="plain">{m.content}</div> : <Markdown text={m.content} />}
        {streaming && !m.content && !m.reasoning ? <span className="typing" aria-label="Generating">…</span> : null}
      </div>
      <div className="msg-meta">
        {m.role === 'assistant' && m.model ? <span>{m.model}</span> : null}
        {m.completion_tokens != null ? <span>{m.completion_tokens} tokens</span> : null}
        {m.duration_ms != null && m.completion_tokens ? (
          <span>{((m.completion_tokens * 1000) / Math.max(1, m.duration_ms)).toFixed(1)} tok/s</span>
        ) : null}
        {ending ? <span className={`ending ending-${m.finish_reason}`}>{ending}</span> : null}
        {!streaming ? (
          <span className="msg-actions">
            <button type="button" className="link" onClick={() => copyText(m.content)}>
              Copy
            </button>
            {m.role === 'user' ? (
              <button
                type="button"
                className="link"
                disabled={busy}
                onClick={() => {
                  setDraft(m.content);
                  setEditing(true);
                }}
              >
                Edit
              </button>
            ) : null}
            {canRegenerate ? (
              <button type="button" className="link" disabled={busy} onClick={onRegenerate}>
                Regenerate
              </button>
            ) : null}
          </span>
        ) : null}
      </div>
    </div>
  );
});
