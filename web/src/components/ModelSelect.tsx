import type { ModelEntry } from '../api';

export function modelLabel(m: ModelEntry): string {
  const parts = [m.id];
  if (m.tags.length) parts.push(m.tags.join(', '));
  if (m.context_length) parts.push(`${formatCtx(m.context_length)} ctx`);
  if (m.status !== 'ready') parts.push(m.status);
  return parts.join(' · ');
}

function formatCtx(n: number): string {
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024}k` : String(n);
}

/** The conversation's model; unavailable models are listed but cannot be picked. */
export function ModelSelect({
  models,
  value,
  onChange,
}: {
  models: ModelEntry[];
  value: string | null;
  onChange: (model: string | null) => void;
}) {
  const known = value == null || models.some((m) => m.id === value);
  return (
    <select
      className="model-select"
      aria-label="Model"
      value={value ?? ''}
      onChange={(e) => onChange(e.target.value || null)}
    >
      <option value="">Default model{models[0] ? ` (${models[0].id})` : ''}</option>
      {models.map((m) => (
        <option key={m.id} value={m.id} disabled={m.status === 'unavailable' || m.status === 'failed'}>
          {modelLabel(m)}
        </option>
      ))}
      {!known ? <option value={value ?? ''}>{value} · not served any more</option> : null}
    </select>
  );
}
