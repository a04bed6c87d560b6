export interface Notice {
  id: number;
  kind: 'error' | 'info';
  text: string;
  action?: { label: string; run: () => void };
  /** Milliseconds before it goes away by itself; errors stay until dismissed. */
  ttl?: number;
}

export function Notices({ notices, dismiss }: { notices: Notice[]; dismiss: (id: number) => void }) {
  return (
    <div className="notices" aria-live="polite">
      {notices.map((n) => (
        <div key={n.id} className={`notice notice-${n.kind}`} role={n.kind === 'error' ? 'alert' : 'status'}>
          <span className="notice-text">{n.text}</span>
          {n.action ? (
            <button
              type="button"
              className="notice-action"
              onClick={() => {
                n.action?.run();
                dismiss(n.id);
              }}
            >
              {n.action.label}
            </button>
          ) : null}
          <button type="button" className="icon" aria-label="Dismiss" onClick={() => dismiss(n.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
