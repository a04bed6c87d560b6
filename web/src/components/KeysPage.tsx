// The Keys page, for an admin key: every key the server has, its limits, and how
// much of its token budget it has used this period (`GET /api/hearth/keys`, what
// `hearth keys` prints). Read again every 15 s while open. Small (about 1 KB
// gzipped), so it stays in the main chunk rather than a lazy one like Jobs.

import { useCallback, useEffect, useState } from 'react';
import { api, ApiError, describeError, type KeyInfo } from '../api';
import { renewsLabel } from './BudgetMeter';
import { SidebarHead, type View } from './SidebarHead';

/** How often the open page reads the keys again. */
const EVERY_MS = 15_000;

const PER = { day: 'day', week: 'week', month: 'month' } as const;

export interface KeysPageProps {
  keyVersion: number;
  status: { level: 'ok' | 'warn' | 'down'; text: string };
  onView: (v: View) => void;
  onMenu: () => void;
  /** The app's handler of errors it has a place for (offline, a key needed). */
  fail: (e: unknown) => void;
}

type State =
  | { kind: 'loading' }
  | { kind: 'ok'; keys: KeyInfo[]; at: Date }
  | { kind: 'forbidden'; message: string }
  | { kind: 'error'; message: string };

const fmt = (n: number) => n.toLocaleString('en-US');

export function KeysPage(p: KeysPageProps) {
  const [state, setState] = useState<State>({ kind: 'loading' });
  const { fail } = p;

  const load = useCallback(
    async (signal?: AbortSignal) => {
      try {
        const keys = await api.keys(signal);
        setState({ kind: 'ok', keys, at: new Date() });
      } catch (e) {
        if ((e as Error)?.name === 'AbortError') return;
        if (e instanceof ApiError && e.status === 403) setState({ kind: 'forbidden', message: e.message });
        else {
          // Offline or a key needed: the app says so (the banner, the key dialog).
          if (e instanceof ApiError && (e.status === 0 || e.status === 401)) fail(e);
          setState((s) => (s.kind === 'ok' ? s : { kind: 'error', message: describeError(e) }));
        }
      }
    },
    [fail],
  );

  useEffect(() => {
    const ac = new AbortController();
    load(ac.signal);
    const t = setInterval(() => load(ac.signal), EVERY_MS);
    const onFocus = () => load(ac.signal);
    window.addEventListener('focus', onFocus);
    return () => {
      ac.abort();
      clearInterval(t);
      window.removeEventListener('focus', onFocus);
    };
  }, [load, p.keyVersion]);

  return (
    <>
      <nav className="sidebar" aria-label="Keys">
        <SidebarHead status={p.status} view="keys" onView={p.onView} />
        <p className="keys-note">
          Keys are set in <code>hearth.toml</code> (<code>[[keys]]</code>) or <code>HEARTH_API_KEYS</code>. A budget renews
          at 00:00 UTC: each day, each Monday, or on the 1st. The same list from a shell: <code>hearth keys</code>.
        </p>
      </nav>
      <main className="chat keys-page">
        <header className="chat-head">
          <button type="button" className="icon menu" aria-label="Keys menu" onClick={p.onMenu}>
            ☰
          </button>
          <h1 className="chat-title">API keys</h1>
          {state.kind === 'ok' ? (
            <span className="keys-at" title={state.at.toISOString()}>
              as of {state.at.toLocaleTimeString('en-GB')}
            </span>
          ) : null}
          <button type="button" onClick={() => load()}>
            Refresh
          </button>
        </header>
        <div className="keys-body">
          {state.kind === 'loading' ? <div className="placeholder">Loading…</div> : null}
          {state.kind === 'forbidden' ? (
            <div className="placeholder" role="alert">
              Only an admin key can see the server's keys. {state.message}
            </div>
          ) : null}
          {state.kind === 'error' ? (
            <div className="placeholder" role="alert">
              The keys cannot be read: {state.message}
            </div>
          ) : null}
          {state.kind === 'ok' && state.keys.length === 0 ? (
            <div className="placeholder">
              This server has no API keys: it answers without one, and only on loopback. Add <code>[[keys]]</code> to{' '}
              <code>hearth.toml</code> to give each user or app its own key, limits and budget.
            </div>
          ) : null}
          {state.kind === 'ok' && state.keys.length > 0 ? <KeysTable keys={state.keys} /> : null}
        </div>
      </main>
    </>
  );
}

/** One row per key: what is not set is a dash, as `hearth keys` prints it. */
export function KeysTable({ keys }: { keys: KeyInfo[] }) {
  return (
    <div className="table-wrap">
      <table className="keys-table" aria-label="API keys">
        <thead>
          <tr>
            <th scope="col">Key</th>
            <th scope="col">Role</th>
            <th scope="col" className="num">Requests/min</th>
            <th scope="col" className="num">Tokens/min</th>
            <th scope="col" className="num">Budget</th>
            <th scope="col" className="num">Used</th>
            <th scope="col" className="num">Left</th>
            <th scope="col">Renews</th>
          </tr>
        </thead>
        <tbody>
          {keys.map((k) => {
            const b = k.budget;
            const fraction = b && b.tokens > 0 ? Math.min(1, b.used / b.tokens) : 0;
            const level = b ? (b.remaining <= 0 ? 'down' : fraction >= 0.9 ? 'warn' : 'ok') : 'ok';
            return (
              <tr key={k.key} data-key={k.key} className={`budget-${level}`}>
                <th scope="row">{k.key}</th>
                <td>{k.admin ? <span className="badge">admin</span> : 'user'}</td>
                <td className="num">{k.rpm > 0 ? fmt(k.rpm) : '–'}</td>
                <td className="num">{k.tpm > 0 ? fmt(k.tpm) : '–'}</td>
                <td className="num">{b ? `${fmt(b.tokens)} / ${PER[b.period] ?? b.period}` : '–'}</td>
                <td className="num">
                  {b ? (
                    <span className="keys-used">
                      {fmt(b.used)}
                      <span className="bar" role="meter" aria-label={`${k.key} budget used`} aria-valuemin={0} aria-valuemax={b.tokens} aria-valuenow={Math.min(b.used, b.tokens)}>
                        <span style={{ width: `${Math.round(fraction * 100)}%` }} />
                      </span>
                    </span>
                  ) : (
                    '–'
                  )}
                </td>
                <td className="num keys-left">{b ? (b.remaining <= 0 ? 'used up' : fmt(b.remaining)) : '–'}</td>
                <td>{b ? renewsLabel(b.renews_at) : '–'}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
