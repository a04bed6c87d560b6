import { describe, expect, it } from 'vitest';
import { highlight } from '../highlight';
import { criticOf, findingsByLine, findingsOf, mark, parseDetail, parseFindingLine, tokenLines, type Finding } from './findings';
import { SHELL_REVIEW, step } from './fixtures';

const f = (line: number, over: Partial<Finding> = {}): Finding => ({ tool: 'ruff', rule: 'F401', line, severity: 'warning', message: 'm', blocking: false, ...over });

describe('findings', () => {
  it('reads a finding from the line the critic logs', () => {
    expect(parseFindingLine('bandit B602 line 4 (high, blocks): subprocess call with shell=True identified, security issue.')).toEqual({
      tool: 'bandit',
      rule: 'B602',
      line: 4,
      severity: 'high',
      message: 'subprocess call with shell=True identified, security issue.',
      blocking: true,
    });
    expect(parseFindingLine('ruff F401 line 1 (warning): `os` imported but unused')?.blocking).toBe(false);
    expect(parseFindingLine('stdout: hello')).toBeNull();
  });

  it('takes the stored review over the live lines', () => {
    const critic = step('critic', { status: 'failed', detail: JSON.stringify(SHELL_REVIEW) });
    expect(findingsOf(critic, ['ruff F401 line 1 (warning): x']).map((x) => x.rule)).toEqual(['B602', 'B404']);
    const running = step('critic', { status: 'running' });
    expect(findingsOf(running, ['ruff F401 line 1 (warning): x', 'noise']).map((x) => x.rule)).toEqual(['F401']);
    expect(parseDetail(step('run', { detail: 'not json' }))).toBeNull();
  });

  it('puts findings on their lines: none on line 0, past the end on the last line, blocking first', () => {
    const by = findingsByLine([f(2), f(0, { rule: 'X' }), f(99, { rule: 'E999', severity: 'error' }), f(2, { rule: 'B602', blocking: true })], 5);
    expect(by.get(2)?.map((x) => x.rule)).toEqual(['B602', 'F401']);
    expect(by.get(0)?.map((x) => x.rule)).toEqual(['X']);
    expect(by.get(5)?.map((x) => x.rule)).toEqual(['E999']);
  });

  it('marks a line by its worst finding', () => {
    expect(mark([f(1), f(1, { blocking: true })])).toBe('blocking');
    expect(mark([f(1, { severity: 'high' })])).toBe('error');
    expect(mark([f(1)])).toBe('warning');
    expect(mark([f(1, { severity: 'low' })])).toBe('note');
    expect(mark([])).toBeNull();
  });

  it('finds the critic of a code attempt', () => {
    const c1 = step('code', { attempt: 1 });
    const k1 = step('critic', { attempt: 1 });
    const c2 = step('code', { attempt: 2 });
    const k2 = step('critic', { attempt: 2 });
    expect(criticOf([c1, k1, c2, k2], c2)).toBe(k2);
    expect(criticOf([c1, k1, c2], c2)).toBeUndefined();
  });

  it('splits highlighted code into lines, a docstring across several', () => {
    const lines = tokenLines(highlight('x = 1\n"""a\nb"""\n\nprint(x)\n', 'python'));
    expect(lines).toHaveLength(5);
    expect(lines.map((l) => l.map((t) => t.text).join(''))).toEqual(['x = 1', '"""a', 'b"""', '', 'print(x)']);
    expect(lines[1][0].kind).toBe('string');
    expect(lines[2][0].kind).toBe('string');
  });
});
