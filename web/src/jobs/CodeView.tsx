import { Fragment, memo, useMemo } from 'react';
import { highlight } from '../highlight';
import { CodeHead } from '../markdown';
import { findingsByLine, mark, tokenLines, type Finding } from './findings';

function FindingText({ f }: { f: Finding }) {
  return (
    <>
      <span className="finding-rule">
        {f.tool} {f.rule}
      </span>{' '}
      <span className="finding-severity">
        {f.severity}
        {f.blocking ? ', blocks' : ''}
      </span>
      : {f.message}
    </>
  );
}

/** A finding as a list item (the critic step's list). */
export function FindingItem({ f }: { f: Finding }) {
  const m = mark([f]);
  return (
    <li className={`finding finding-${m}`} data-line={f.line} data-rule={f.rule}>
      <span className="finding-line">{f.line > 0 ? `line ${f.line}` : 'file'}</span> <FindingText f={f} />
    </li>
  );
}

/**
 * Python with highlighting and line numbers; each critic finding is marked on its
 * line (the worst one colours it) and said under it.
 */
export const CodeView = memo(function CodeView({ code, findings = [], label = 'python' }: { code: string; findings?: Finding[]; label?: string }) {
  const lines = useMemo(() => tokenLines(highlight(code, 'python')), [code]);
  const byLine = useMemo(() => findingsByLine(findings, lines.length), [findings, lines.length]);
  const top = byLine.get(0);
  return (
    <div className="code job-code">
      <CodeHead code={code} label={label} />
      {top ? (
        <ul className="line-findings top">
          {top.map((f, i) => (
            <FindingItem key={i} f={f} />
          ))}
        </ul>
      ) : null}
      <pre>
        <code>
          {lines.map((tokens, i) => {
            const n = i + 1;
            const here = byLine.get(n);
            const m = here ? mark(here) : null;
            return (
              <Fragment key={n}>
                <span className={`line${m ? ` line-${m}` : ''}`} data-line={n} data-mark={m ?? undefined}>
                  <span className="ln" aria-hidden="true">
                    {n}
                  </span>
                  <span className="lc">
                    {tokens.length === 0
                      ? ' '
                      : tokens.map((t, j) => (t.kind === 'plain' ? t.text : <span key={j} className={`tok-${t.kind}`}>{t.text}</span>))}
                  </span>
                </span>
                {here ? (
                  <span className="line-findings" role="note" data-line={n}>
                    {here.map((f, j) => (
                      <span key={j} className={`finding finding-${mark([f])}`}>
                        <FindingText f={f} />
                      </span>
                    ))}
                  </span>
                ) : null}
              </Fragment>
            );
          })}
        </code>
      </pre>
    </div>
  );
});
