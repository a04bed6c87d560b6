import { describe, expect, it } from 'vitest';
import { render, screen } from '@testing-library/react';
import { ModelSelect } from './ModelSelect';
import type { ModelEntry } from '../api';

// Managed model servers' states, as /v1/models gives them.
const engine = (state: ModelEntry['status'], reason?: string) => ({
  state,
  attempt: 1,
  restarts: 0,
  reason,
  log: 'data/logs/engines/x.YYYY-MM-DD.log',
  start: 'eager' as const,
});
const models: ModelEntry[] = [
  { id: 'starting', status: 'starting', tags: [], context_length: null, backend: 'upstream', engine: engine('starting') },
  { id: 'stopped', status: 'stopped', tags: [], context_length: null, backend: 'upstream', engine: engine('stopped') },
  {
    id: 'broken',
    status: 'failed',
    tags: [],
    context_length: null,
    backend: 'upstream',
    engine: engine('failed', 'exited with status 1 before it was ready'),
  },
];

describe('ModelSelect with managed model servers', () => {
  it('lets a starting or stopped server be picked (a message waits for it), not a failed one', () => {
    render(<ModelSelect models={models} value={null} onChange={() => {}} />);
    const option = (name: RegExp) => screen.getByRole('option', { name }) as HTMLOptionElement;
    expect(option(/^starting/).disabled).toBe(false);
    expect(option(/^starting/).textContent).toBe('starting · starting');
    expect(option(/^stopped/).disabled).toBe(false);
    expect(option(/^broken/).disabled).toBe(true);
    expect(option(/^broken/).textContent).toBe('broken · failed');
  });
});
