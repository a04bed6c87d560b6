export type View = 'chat' | 'jobs' | 'keys';

/** The top of the sidebar: the brand, the server's status, and the switch between
 *  chat and jobs (and, for an admin key, the keys' page). */
export function SidebarHead({
  status,
  view,
  onView,
  admin = false,
}: {
  status: { level: 'ok' | 'warn' | 'down'; text: string };
  view: View;
  onView?: (v: View) => void;
  /** Whether the caller's key is an admin key: the Keys link is shown. */
  admin?: boolean;
}) {
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
          {admin || view === 'keys' ? link('keys', 'Keys', '/keys') : null}
        </div>
      ) : null}
    </>
  );
}
