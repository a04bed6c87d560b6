import { memo, useEffect, useRef, useState } from 'react';
import type { Budget, Conversation } from '../api';
import { BudgetMeter } from './BudgetMeter';
import { SidebarHead, type View } from './SidebarHead';

export interface SidebarProps {
  conversations: Conversation[];
  activeId: string | null;
  search: string;
  loading: boolean;
  hasMore: boolean;
  status: { level: 'ok' | 'warn' | 'down'; text: string };
  onSearch: (s: string) => void;
  onSelect: (id: string) => void;
  onNew: () => void;
  onRename: (id: string, title: string) => void;
  onDelete: (c: Conversation) => void;
  onMore: () => void;
  /** Switches to the jobs' page (no switch when absent). */
  onView?: (v: View) => void;
  /** Whether the caller's key is an admin key (the Keys page is offered). */
  admin?: boolean;
  /** The key's token budget, when it has one. */
  budget?: Budget | null;
}

export function Sidebar(p: SidebarProps) {
  const sentinel = useRef<HTMLLIElement>(null);
  const { hasMore, loading, onMore } = p;
  // Next page when the end of the list scrolls into view.
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !hasMore || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !loading) onMore();
    });
    io.observe(el);
    return () => io.disconnect();
  }, [hasMore, loading, onMore]);

  return (
    <nav className="sidebar" aria-label="Conversations">
      <SidebarHead status={p.status} view="chat" onView={p.onView} admin={p.admin} />
      <button type="button" className="new-chat primary" onClick={p.onNew} title="New chat (Ctrl+K)">
        + New chat
      </button>
      <input
        type="search"
        className="search"
        placeholder="Search conversations"
        aria-label="Search conversations"
        value={p.search}
        onChange={(e) => p.onSearch(e.target.value)}
      />
      <ul className="conv-list">
        {p.conversations.map((c) => (
          <ConversationItem
            key={c.id}
            c={c}
            active={c.id === p.activeId}
            onSelect={p.onSelect}
            onRename={p.onRename}
            onDelete={p.onDelete}
          />
        ))}
        {p.conversations.length === 0 && !p.loading ? (
          <li className="empty">{p.search ? 'No conversation matches.' : 'No conversations yet.'}</li>
        ) : null}
        {p.hasMore ? (
          <li ref={sentinel} className="more">
            <button type="button" onClick={p.onMore} disabled={p.loading}>
              {p.loading ? 'Loading…' : 'Load more'}
            </button>
          </li>
        ) : null}
      </ul>
      {p.budget ? <BudgetMeter budget={p.budget} /> : null}
    </nav>
  );
}

const ConversationItem = memo(function ConversationItem({
  c,
  active,
  onSelect,
  onRename,
  onDelete,
}: {
  c: Conversation;
  active: boolean;
  onSelect: (id: string) => void;
  onRename: (id: string, title: string) => void;
  onDelete: (c: Conversation) => void;
}) {
  const [editing, setEditing] = useState(false);
  const [title, setTitle] = useState(c.title);
  const label = c.title || 'New chat';
  if (editing) {
    const done = (save: boolean) => {
      setEditing(false);
      if (save && title.trim() !== c.title) onRename(c.id, title.trim());
    };
    return (
      <li className="conv active">
        <input
          className="rename"
          aria-label="Conversation title"
          autoFocus
          value={title}
          maxLength={200}
          onChange={(e) => setTitle(e.target.value)}
          onBlur={() => done(true)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') done(true);
            if (e.key === 'Escape') {
              e.stopPropagation();
              done(false);
            }
          }}
        />
      </li>
    );
  }
  return (
    <li className={`conv${active ? ' active' : ''}`} data-id={c.id}>
      <a
        href={`/c/${c.id}`}
        className="conv-title"
        aria-current={active ? 'page' : undefined}
        onClick={(e) => {
          e.preventDefault();
          onSelect(c.id);
        }}
        onDoubleClick={() => {
          setTitle(c.title);
          setEditing(true);
        }}
      >
        {label}
      </a>
      <span className="conv-actions">
        <button
          type="button"
          className="icon"
          aria-label={`Rename ${label}`}
          title="Rename"
          onClick={() => {
            setTitle(c.title);
            setEditing(true);
          }}
        >
          ✎
        </button>
        <button type="button" className="icon" aria-label={`Delete ${label}`} title="Delete" onClick={() => onDelete(c)}>
          ×
        </button>
      </span>
    </li>
  );
});
