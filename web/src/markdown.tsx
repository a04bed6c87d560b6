// Markdown to React elements. `marked` parses; rendering is ours, so model output
// can never inject HTML: raw HTML shows as text and links must be http(s) or mailto.

import { memo, useState, type ReactNode } from 'react';
import { Lexer, type Token, type Tokens } from 'marked';
import { highlight } from './highlight';

export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Clipboard API needs a secure context; plain http on a LAN address is not one.
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.style.position = 'fixed';
    ta.style.opacity = '0';
    document.body.appendChild(ta);
    ta.select();
    const ok = document.execCommand('copy');
    ta.remove();
    return ok;
  }
}

/** A code block's head: its label and a Copy button for `code`. */
export function CodeHead({ code, label }: { code: string; label: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div className="code-head">
      <span className="code-lang">{label}</span>
      <button
        type="button"
        className="copy"
        aria-label="Copy code"
        onClick={async () => {
          if (await copyText(code)) {
            setCopied(true);
            setTimeout(() => setCopied(false), 1500);
          }
        }}
      >
        {copied ? 'Copied' : 'Copy'}
      </button>
    </div>
  );
}

export function CodeBlock({ code, lang }: { code: string; lang?: string }) {
  const tokens = highlight(code, lang);
  return (
    <div className="code">
      <CodeHead code={code} label={lang || 'text'} />
      <pre>
        <code>
          {tokens.map((t, i) => (t.kind === 'plain' ? t.text : <span key={i} className={`tok-${t.kind}`}>{t.text}</span>))}
        </code>
      </pre>
    </div>
  );
}

function safeHref(href: string): string | null {
  const h = href.trim();
  return /^(https?:|mailto:)/i.test(h) ? h : null;
}

function inline(tokens: Token[] | undefined, key = 'i'): ReactNode[] {
  if (!tokens) return [];
  return tokens.map((t, i) => {
    const k = `${key}${i}`;
    switch (t.type) {
      case 'strong':
        return <strong key={k}>{inline((t as Tokens.Strong).tokens, k)}</strong>;
      case 'em':
        return <em key={k}>{inline((t as Tokens.Em).tokens, k)}</em>;
      case 'del':
        return <del key={k}>{inline((t as Tokens.Del).tokens, k)}</del>;
      case 'codespan':
        return <code key={k}>{unescape((t as Tokens.Codespan).text)}</code>;
      case 'br':
        return <br key={k} />;
      case 'link': {
        const l = t as Tokens.Link;
        const href = safeHref(l.href);
        const body = inline(l.tokens, k);
        return href ? (
          <a key={k} href={href} target="_blank" rel="noopener noreferrer">
            {body}
          </a>
        ) : (
          <span key={k}>{body}</span>
        );
      }
      case 'image': {
        const im = t as Tokens.Image;
        // Images are not loaded (they could track the reader); the alt text shows.
        return <span key={k}>[image: {im.text}]</span>;
      }
      case 'text': {
        const tt = t as Tokens.Text;
        return tt.tokens ? <span key={k}>{inline(tt.tokens, k)}</span> : unescape(tt.text);
      }
      case 'escape':
        return (t as Tokens.Escape).text;
      case 'html':
        return (t as Tokens.HTML).text;
      default:
        return 'raw' in t ? String(t.raw) : '';
    }
  });
}

// marked escapes entities in some token texts; React escapes again, so undo marked's.
function unescape(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|#39);/g, (_, e) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e as string] ?? _);
}

function block(tokens: Token[], key = 'b'): ReactNode[] {
  return tokens.map((t, i) => {
    const k = `${key}${i}`;
    switch (t.type) {
      case 'space':
      case 'def':
        return null;
      case 'code': {
        const c = t as Tokens.Code;
        return <CodeBlock key={k} code={c.text} lang={c.lang?.split(/\s/)[0]} />;
      }
      case 'heading': {
        const h = t as Tokens.Heading;
        const Tag = `h${Math.min(6, Math.max(3, h.depth + 2))}` as 'h3';
        return <Tag key={k}>{inline(h.tokens, k)}</Tag>;
      }
      case 'paragraph':
        return <p key={k}>{inline((t as Tokens.Paragraph).tokens, k)}</p>;
      case 'blockquote':
        return <blockquote key={k}>{block((t as Tokens.Blockquote).tokens, k)}</blockquote>;
      case 'hr':
        return <hr key={k} />;
      case 'list': {
        const l = t as Tokens.List;
        const items = l.items.map((it, j) => (
          <li key={`${k}-${j}`}>
            {it.task ? <input type="checkbox" checked={!!it.checked} readOnly /> : null}
            {it.loose ? block(it.tokens, `${k}-${j}`) : blockTight(it.tokens, `${k}-${j}`)}
          </li>
        ));
        return l.ordered ? (
          <ol key={k} start={typeof l.start === 'number' ? l.start : undefined}>
            {items}
          </ol>
        ) : (
          <ul key={k}>{items}</ul>
        );
      }
      case 'table': {
        const tb = t as Tokens.Table;
        return (
          <div key={k} className="table-wrap">
            <table>
              <thead>
                <tr>
                  {tb.header.map((c, j) => (
                    <th key={j} style={{ textAlign: tb.align[j] ?? undefined }}>
                      {inline(c.tokens, `${k}h${j}`)}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {tb.rows.map((r, ri) => (
                  <tr key={ri}>
                    {r.map((c, j) => (
                      <td key={j} style={{ textAlign: tb.align[j] ?? undefined }}>
                        {inline(c.tokens, `${k}r${ri}c${j}`)}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        );
      }
      case 'html':
        return <p key={k}>{(t as Tokens.HTML).text}</p>;
      case 'text': {
        const tt = t as Tokens.Text;
        return <p key={k}>{tt.tokens ? inline(tt.tokens, k) : unescape(tt.text)}</p>;
      }
      default:
        return <p key={k}>{'raw' in t ? String(t.raw) : ''}</p>;
    }
  });
}

// Tight list items hold bare text tokens: render them inline, not as paragraphs.
function blockTight(tokens: Token[], key: string): ReactNode[] {
  return tokens.map((t, i) =>
    t.type === 'text' ? (
      <span key={`${key}t${i}`}>{(t as Tokens.Text).tokens ? inline((t as Tokens.Text).tokens, `${key}t${i}`) : unescape((t as Tokens.Text).text)}</span>
    ) : (
      block([t], `${key}t${i}`)
    ),
  );
}

export function renderMarkdown(text: string): ReactNode[] {
  const tokens = new Lexer({ gfm: true, breaks: true }).lex(text);
  return block(tokens);
}

export const Markdown = memo(function Markdown({ text }: { text: string }) {
  return <div className="md">{renderMarkdown(text)}</div>;
});
