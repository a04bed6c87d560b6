import type { Budget } from '../api';

const PERIOD = { day: 'today', week: 'this week', month: 'this month' } as const;

/** "3 Dec, 00:00 UTC": when a budget renews, in the server's terms (budgets are UTC). */
export function renewsLabel(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const day = d.toLocaleDateString('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
  const time = d.toISOString().slice(11, 16);
  return `${day}, ${time} UTC`;
}

/** The key's token budget at the foot of the sidebar: what is left, and when it renews. */
export function BudgetMeter({ budget }: { budget: Budget }) {
  const left = Math.max(0, budget.remaining);
  const fraction = budget.tokens > 0 ? Math.min(1, budget.used / budget.tokens) : 1;
  const level = left === 0 ? 'down' : fraction >= 0.9 ? 'warn' : 'ok';
  const fmt = (n: number) => n.toLocaleString('en-US');
  return (
    <div className={`budget budget-${level}`} role="status" aria-label="Token budget">
      <div className="budget-text">
        {left === 0
          ? `Token budget used up ${PERIOD[budget.period] ?? ''}`
          : `${fmt(left)} of ${fmt(budget.tokens)} tokens left ${PERIOD[budget.period] ?? ''}`}
      </div>
      <div className="budget-bar" aria-hidden="true">
        <div className="budget-used" style={{ width: `${Math.round(fraction * 100)}%` }} />
      </div>
      <div className="budget-renews">renews {renewsLabel(budget.renews_at)}</div>
    </div>
  );
}
