// What a step's `detail` holds (the critic's review, the sandbox's outcome), and
// the critic's findings laid on the lines of the code they are about.

import type { Token } from '../highlight';
import type { JobStep } from './api';

/** One thing ruff or bandit found (`hearth_jobs::critic::Finding`). */
export interface Finding {
  tool: string;
  rule: string;
  /** 1-based; 0 when the tool gave none. */
  line: number;
  /** `error` (syntax), `warning` (other ruff findings), bandit's `low`, `medium`, `high`. */
  severity: string;
  message: string;
  /** It stopped the script from running. */
  blocking: boolean;
}

export interface Review {
  findings: Finding[];
  blocked: boolean;
}

/** What the sandbox said of a run (the run step's `detail`). */
export interface RunDetail {
  exit_code: number | null;
  signal: number | null;
  /** `timeout`, `memory`, `cpu`, `pids`, `output_size`. */
  limit: string | null;
  /** The limit that ended it, in plain words. */
  explanation: string | null;
  stderr: string;
  stdout_truncated: boolean;
  stderr_truncated: boolean;
  files: { path: string; size: number; truncated: boolean }[];
  files_truncated: boolean;
  usage: { wall_ms: number; cpu_ms: number; peak_memory_bytes: number; source: string } | null;
  isolation: string;
  warnings: string[];
}

/** A code step's `detail`: the model's whole reply, or that the user wrote it. */
export interface CodeDetail {
  reply?: string;
  edited?: boolean;
}

export function parseDetail<T>(step: Pick<JobStep, 'detail'>): T | null {
  if (!step.detail) return null;
  try {
    const v = JSON.parse(step.detail);
    return v && typeof v === 'object' ? (v as T) : null;
  } catch {
    return null;
  }
}

const LOGGED = /^(\S+) (\S+) line (\d+) \(([^,)]+)(, blocks)?\): ([\s\S]*)$/;

/** A finding as the critic logs it live: `bandit B602 line 3 (high, blocks): ...`. */
export function parseFindingLine(line: string): Finding | null {
  const m = LOGGED.exec(line);
  if (!m) return null;
  return { tool: m[1], rule: m[2], line: Number(m[3]), severity: m[4], message: m[6], blocking: !!m[5] };
}

/** The critic's findings: from its stored review, else from the lines it logged. */
export function findingsOf(critic: JobStep, logs: string[] = []): Finding[] {
  const review = parseDetail<Review>(critic);
  if (review && Array.isArray(review.findings)) return review.findings;
  return logs.map(parseFindingLine).filter((f): f is Finding => f != null);
}

/** The critic step that checked a code step (same attempt, after it). */
export function criticOf(steps: JobStep[], code: JobStep): JobStep | undefined {
  return steps.find((s) => s.kind === 'critic' && s.attempt === code.attempt && s.seq > code.seq);
}

/** How a line with these findings is marked: the worst of them. */
export function mark(findings: Finding[]): 'blocking' | 'error' | 'warning' | 'note' | null {
  if (findings.length === 0) return null;
  if (findings.some((f) => f.blocking)) return 'blocking';
  if (findings.some((f) => f.severity === 'error' || f.severity === 'high')) return 'error';
  if (findings.some((f) => f.severity === 'warning' || f.severity === 'medium')) return 'warning';
  return 'note';
}

/**
 * The findings by the line they are on (1-based). A finding without a line, or past
 * the end of the code (a syntax error at end of file), goes on line 0 (shown above
 * the code) or the last line.
 */
export function findingsByLine(findings: Finding[], lineCount: number): Map<number, Finding[]> {
  const out = new Map<number, Finding[]>();
  for (const f of findings) {
    const n = f.line <= 0 ? 0 : Math.min(f.line, Math.max(1, lineCount));
    const list = out.get(n) ?? [];
    list.push(f);
    out.set(n, list);
  }
  for (const list of out.values()) list.sort((a, b) => Number(b.blocking) - Number(a.blocking));
  return out;
}

/** Splits highlighted tokens into lines (a token may span several: a docstring). */
export function tokenLines(tokens: Token[]): Token[][] {
  const lines: Token[][] = [[]];
  for (const t of tokens) {
    const parts = t.text.split('\n');
    parts.forEach((p, i) => {
      if (i > 0) lines.push([]);
      if (p) lines[lines.length - 1].push({ kind: t.kind, text: p });
    });
  }
  // A trailing newline ends the last line rather than starting an empty one.
  if (lines.length > 1 && lines[lines.length - 1].length === 0) lines.pop();
  return lines;
}
