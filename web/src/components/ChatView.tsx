import { forwardRef, useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import type { Message, ModelEntry } from '../api';
import type { Plan } from '../context';
import { Composer } from './Composer';
import { MessageView } from './MessageView';
import { ModelSelect } from './ModelSelect';

/** Messages rendered at first; older ones render as the reader scrolls up. */
export const WINDOW = 60;

export interface ChatViewProps {
  conversationId: string | null;
  title: string;
  messages: Message[];
  loading: boolean;
  streamingId: string | null;
  models: ModelEntry[];
  model: string | null;
  systemPrompt: string | null;
  plan: Plan;
  onModel: (m: string | null) => void;
  onSystemPrompt: (s: string | null) => void;
  onSend: (text: string) => void;
  onStop: () => void;
  onRegenerate: () => void;
  onEdit: (m: Message, content: string) => void;
  onExport: (format: 'json' | 'markdown') => void;
  onMenu: () => void;
}

export const ChatView = forwardRef<HTMLTextAreaElement, ChatViewProps>(function ChatView(p, composerRef) {
  const [showSystem, setShowSystem] = useState(false);
  const [system, setSystem] = useState(p.systemPrompt ?? '');
  const [shown, setShown] = useState(WINDOW);
  const scroller = useRef<HTMLDivElement>(null);
  const top = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const keepFromBottom = useRef<number | null>(null);

  useEffect(() => {
    setSystem(p.systemPrompt ?? '');
  }, [p.systemPrompt, p.conversationId]);

  // A newly opened conversation starts at its end, with the last WINDOW messages.
  useLayoutEffect(() => {
    setShown(WINDOW);
    stick.current = true;
  }, [p.conversationId]);

  const first = Math.max(0, p.messages.length - shown);
  const visible = p.messages.slice(first);
  const last = p.messages[p.messages.length - 1];
  const lastUserIdx = p.messages.map((m) => m.role).lastIndexOf('user');

  // Keep the view pinned to the bottom while a reply grows, unless the reader scrolled up.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (keepFromBottom.current != null) {
      el.scrollTop = el.scrollHeight - keepFromBottom.current;
      keepFromBottom.current = null;
    } else if (stick.current) {
      el.scrollTop = el.scrollHeight;
    }
  });

  // Signal for tests and the benchmark: this conversation is on screen.
  useEffect(() => {
    if (!p.loading && p.conversationId) {
      document.body.dataset.opened = p.conversationId;
      window.dispatchEvent(new CustomEvent('hearth:opened', { detail: p.conversationId }));
    }
  }, [p.loading, p.conversationId]);

  const more = useCallback(() => {
    if (first === 0) return;
    const el = scroller.current;
    if (el) keepFromBottom.current = el.scrollHeight - el.scrollTop;
    setShown((n) => n + WINDOW);
  }, [first]);

  useEffect(() => {
    const el = top.current;
    if (!el || first === 0 || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver((e) => {
      if (e.some((x) => x.isIntersecting)) more();
    }, { root: scroller.current });
    io.observe(el);
    return () => io.disconnect();
  }, [first, more]);

  const pct = p.plan.limit ? Math.min(100, Math.round((p.plan.used / p.plan.limit) * 100)) : null;
  const busy = p.streamingId != null;
  const saveSystem = () => {
    const v = system.trim() ? system : null;
    if (v !== (p.systemPrompt ?? null)) p.onSystemPrompt(v);
  };

  return (
    <main className="chat">
      <header className="chat-head">
        <button type="button" className="icon menu" aria-label="Conversations" onClick={p.onMenu}>
          ☰
        </button>
        <h1 className="chat-title" title={p.title}>
          {p.title || 'New chat'}
        </h1>
        <ModelSelect models={p.models} value={p.model} onChange={p.onModel} />
        <button type="button" className={`toggle${showSystem ? ' on' : ''}`} aria-expanded={showSystem} onClick={() => setShowSystem((s) => !s)}>
          System prompt{p.systemPrompt ? ' •' : ''}
        </button>
        {p.conversationId ? (
          <span className="export">
            <button type="button" className="link" onClick={() => p.onExport('markdown')} title="Export as Markdown">
              .md
            </button>
            <button type="button" className="link" onClick={() => p.onExport('json')} title="Export as JSON">
              .json
            </button>
          </span>
        ) : null}
        <span
          className={`context${pct != null && pct >= 75 ? ' context-full' : ''}`}
          data-testid="context"
          title="Estimated tokens sent to the model, against its context length"
        >
          {p.plan.used.toLocaleString()}
          {p.plan.limit ? ` / ${p.plan.limit.toLocaleString()}` : ''} tokens
          {pct != null ? (
            <span className="bar" aria-hidden="true">
              <span style={{ width: `${pct}%` }} />
            </span>
          ) : null}
        </span>
      </header>
      {showSystem ? (
        <div className="system">
          <textarea
            aria-label="System prompt"
            placeholder="Instructions the model sees before every message of this conversation"
            value={system}
            rows={3}
            onChange={(e) => setSystem(e.target.value)}
            onBlur={saveSystem}
          />
          <button type="button" onClick={saveSystem}>
            Save
          </button>
        </div>
      ) : null}
      {p.plan.start > 0 ? (
        <div className="context-note" role="status" data-testid="context-note">
          This conversation uses over 75% of the model's context: the {p.plan.start} oldest message
          {p.plan.start === 1 ? ' is' : 's are'} left out of what is sent. The system prompt is kept.
        </div>
      ) : null}
      <div
        className="messages"
        ref={scroller}
        data-conversation={p.conversationId ?? ''}
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 60;
        }}
      >
        {first > 0 ? (
          <div ref={top} className="older">
            <button type="button" className="link" onClick={more}>
              Show {Math.min(WINDOW, first)} earlier messages
            </button>
          </div>
        ) : null}
        {p.loading ? <div className="placeholder">Loading…</div> : null}
        {!p.loading && p.messages.length === 0 ? (
          <div className="placeholder welcome">
            <h2>What can I help with?</h2>
            <p>
              Replies stream from the model you pick above. Press <kbd>Ctrl</kbd>+<kbd>/</kbd> for shortcuts.
            </p>
          </div>
        ) : null}
        {visible.map((m, i) => {
          const idx = first + i;
          return (
            <MessageView
              key={m.id}
              m={m}
              streaming={m.id === p.streamingId}
              omitted={idx < p.plan.start}
              canRegenerate={m === last && idx > lastUserIdx && m.role === 'assistant'}
              busy={busy}
              onRegenerate={p.onRegenerate}
              onEdit={p.onEdit}
            />
          );
        })}
        {last && last.role === 'user' && !busy && !p.loading ? (
          <div className="retry">
            <span>No reply to the last message.</span>
            <button type="button" onClick={p.onRegenerate}>
              Answer it
            </button>
          </div>
        ) : null}
      </div>
      <Composer ref={composerRef} busy={busy} disabled={p.loading} onSend={p.onSend} onStop={p.onStop} />
    </main>
  );
});
