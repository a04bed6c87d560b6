export type View = 'chat' | 'jobs';

/** The top of the sidebar: the brand, the server's status, and the switch between chat and jobs. */
export function SidebarHead({ status, view, onView }: { status: { level: 'ok' | 'warn' | 'down'; text: string }; view: View; onView?: (v: View) => void }) {
  const link = (v: View, label: string, href: string) => (
    <a
      href={href}
      className={`view-link${view === v ? ' active' : ''}`}
      aria-current={view === v ? 'page' : undefined}
      onClick={(e) => {
        if (!onView || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        onView(v);
      }}
    >
      {label}
    </a>
  );
  return (
    <>
      <div className="sidebar-head">
        <span className="brand">Hearth</span>
        <span className={`status status-${status.level}`} title={status.text} data-testid="status">
          <span className="dot" aria-hidden="true" />
          <span className="status-text">{status.text}</span>
        </span>
      </div>
      {onView ? (
        <div className="view-switch">
          {link('chat', 'Chat', '/')}
          {link('jobs', 'Jobs', '/jobs')}
        </div>
      ) : null}
    </>
  );
}
