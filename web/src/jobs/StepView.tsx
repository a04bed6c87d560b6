import { memo, useEffect, useState, type ReactNode } from 'react';
import { Markdown } from '../markdown';
import type { JobStep } from './api';
import { CodeView, FindingItem } from './CodeView';
import { criticOf, findingsOf, parseDetail, type CodeDetail, type RunDetail } from './findings';
import { formatBytes, formatMs, sentence, stepHint, stepTitle } from './format';

const ICONS: Record<string, string> = {
  running: '◌',
  succeeded: '✓',
  failed: '✗',
  cancelled: '–',
  interrupted: '↻',
};

/** Why a repair attempt was asked for: what the attempt before it came to. */
function repairReason(steps: JobStep[], code: JobStep): string | null {
  if (code.attempt <= 1) return null;
  const before = steps.filter((s) => s.seq < code.seq && s.attempt === code.attempt - 1);
  const last = before[before.length - 1];
  if (!last) return null;
  if (last.kind === 'critic' && last.status === 'failed') return `A repair: the critic blocked attempt ${last.attempt}.`;
  if (last.kind === 'run' && last.status === 'failed') return `A repair: attempt ${last.attempt} failed when it ran.`;
  return null;
}

/** Seconds since a running step started, ticking. */
function Elapsed({ since }: { since: number }) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return <>{Math.max(0, Math.floor((now - since) / 1000))} s</>;
}

function LiveLines({ lines }: { lines: string[] }) {
  if (lines.length === 0) return null;
  return (
    <pre className="live-log" aria-live="polite">
      {lines.map((l, i) => (
        <span key={i} className={l.startsWith('stderr: ') ? 'log-stderr' : l.startsWith('warning: ') ? 'log-warning' : undefined}>
          {l}
          {'\n'}
        </span>
      ))}
    </pre>
  );
}

function Output({ title, text, cut, className }: { title: string; text: string; cut?: boolean; className?: string }) {
  if (!text) return null;
  return (
    <div className={`output ${className ?? ''}`}>
      <div className="output-title">
        {title}
        {cut ? ' (cut short)' : ''}
      </div>
      <pre>{text}</pre>
    </div>
  );
}

type Usage = NonNullable<RunDetail['usage']>;

/** What a sandbox run used: its time, CPU and peak memory. */
function UsageItems({ u }: { u: Usage }) {
  return (
    <>
      <dt>Time</dt>
      <dd>{formatMs(u.wall_ms)}</dd>
      <dt>CPU</dt>
      <dd>{formatMs(u.cpu_ms)}</dd>
      <dt>Memory</dt>
      <dd title={`measured by ${u.source}`}>{formatBytes(u.peak_memory_bytes)} peak</dd>
    </>
  );
}

function RunBody({ step }: { step: JobStep }) {
  const d = parseDetail<RunDetail>(step);
  if (!d) return step.output ? <Output title="stdout" text={step.output} /> : null;
  const ended = d.signal != null ? `ended by signal ${d.signal}` : d.exit_code != null ? `exit code ${d.exit_code}` : null;
  const u = d.usage;
  return (
    <>
      {d.explanation ? <p className="step-error">{sentence(d.explanation)}</p> : null}
      <Output title="stdout" text={step.output ?? ''} cut={d.stdout_truncated} />
      <Output title="stderr" text={d.stderr} cut={d.stderr_truncated} className="stderr" />
      <dl className="usage" aria-label="Resources used">
        {ended ? (
          <>
            <dt>Status</dt>
            <dd>{ended}</dd>
          </>
        ) : null}
        {u ? <UsageItems u={u} /> : null}
        {d.isolation ? (
          <>
            <dt>Sandbox</dt>
            <dd>{d.isolation}</dd>
          </>
        ) : null}
        {d.files?.length ? (
          <>
            <dt>Wrote</dt>
            <dd>
              {d.files.map((f) => `${f.path} (${formatBytes(f.size)}${f.truncated ? ', cut' : ''})`).join(', ')}
              {d.files_truncated ? '; some files were not kept' : ''}
            </dd>
          </>
        ) : null}
      </dl>
      {d.warnings?.length ? (
        <ul className="warnings">
          {d.warnings.map((w, i) => (
            <li key={i}>{w}</li>
          ))}
        </ul>
      ) : null}
    </>
  );
}

export interface StepViewProps {
  step: JobStep;
  steps: JobStep[];
  /** Lines logged live by this step. */
  logs: string[];
  /** Lines logged live by the critic that checks this (code) step. */
  criticLogs: string[];
}

export const StepView = memo(function StepView({ step, steps, logs, criticLogs }: StepViewProps) {
  const running = step.status === 'running';
  const failed = step.status === 'failed';
  const meta: string[] = [];
  if (step.model) meta.push(step.model);
  if (step.completion_tokens != null) meta.push(`${step.prompt_tokens ?? 0} + ${step.completion_tokens} tokens`);
  if (step.duration_ms != null) meta.push(formatMs(step.duration_ms));
  if (step.status === 'cancelled') meta.push('cancelled');
  if (step.status === 'interrupted') meta.push('interrupted (runs again)');

  let body: ReactNode = null;
  if (step.kind === 'vision' || step.kind === 'plan') {
    if (failed && step.output) body = <p className="step-error">{sentence(step.output)}</p>;
    else if (step.output) body = <Markdown text={step.output} />;
  } else if (step.kind === 'code') {
    const detail = parseDetail<CodeDetail>(step);
    const reason = repairReason(steps, step);
    const critic = criticOf(steps, step);
    const findings = critic ? findingsOf(critic, critic.status === 'running' ? criticLogs : []) : [];
    body = (
      <>
        {reason ? <p className="step-note">{reason}</p> : null}
        {detail?.edited ? <p className="step-note">Written by you.</p> : null}
        {failed ? (
          <>
            <p className="step-error">{sentence(step.output ?? 'The code step failed')}</p>
            {detail?.reply ? (
              <details>
                <summary>The model's reply</summary>
                <Markdown text={detail.reply} />
              </details>
            ) : null}
          </>
        ) : step.output ? (
          <CodeView code={step.output} findings={findings} label={`python · attempt ${step.attempt}`} />
        ) : null}
      </>
    );
  } else if (step.kind === 'critic') {
    const findings = findingsOf(step, logs);
    const review = parseDetail<{ blocked?: boolean; usage?: Usage }>(step);
    body = (
      <>
        {step.output ? (
          <p className={review?.blocked ? 'step-error' : 'step-note'}>
            {review ? `${sentence(step.output)}${review.blocked ? ' The script did not run.' : ''}` : sentence(step.output)}
          </p>
        ) : null}
        {findings.length > 0 ? (
          <ul className="findings">
            {findings.map((f, i) => (
              <FindingItem key={i} f={f} />
            ))}
          </ul>
        ) : null}
        {review?.usage ? (
          <dl className="usage" aria-label="Resources used">
            <UsageItems u={review.usage} />
          </dl>
        ) : null}
      </>
    );
  } else if (step.kind === 'run') {
    if (failed && !step.detail) body = <p className="step-error">{sentence(step.output ?? 'The run failed')}</p>;
    else if (!running) body = <RunBody step={step} />;
  }

  return (
    <section className={`step step-${step.status}`} data-kind={step.kind} data-attempt={step.attempt} data-status={step.status} aria-label={stepTitle(step)}>
      <header className="step-head">
        <span className="step-icon" aria-hidden="true">
          {ICONS[step.status] ?? '•'}
        </span>
        <h3>{stepTitle(step)}</h3>
        <span className="step-hint">{stepHint(step.kind)}</span>
        {meta.length || running ? (
          <span className="step-meta">
            {meta.join(' · ')}
            {running ? (
              <>
                {meta.length ? ' · ' : ''}
                <Elapsed since={step.started_at} />
              </>
            ) : null}
          </span>
        ) : null}
      </header>
      <div className="step-body">
        {body}
        {running && step.kind !== 'critic' ? <span className="typing">Working…</span> : null}
        {running && step.kind === 'critic' && logs.length === 0 ? <span className="typing">Checking…</span> : null}
        {step.kind === 'run' && (running || step.detail == null) ? <LiveLines lines={logs} /> : null}
      </div>
    </section>
  );
});
