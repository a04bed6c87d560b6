// A small syntax highlighter: comments, strings, numbers and keywords for the
// languages models write most. Output is tokens, rendered as React text (never HTML).

export type TokenKind = 'plain' | 'comment' | 'string' | 'number' | 'keyword' | 'literal';
export interface Token {
  kind: TokenKind;
  text: string;
}

interface Lang {
  keywords: string[];
  literals?: string[];
  line?: string[];
  block?: [string, string];
  strings: string[];
}

const C_LIKE = { line: ['//'], block: ['/*', '*/'] as [string, string] };

const LANGS: Record<string, Lang> = {
  js: {
    ...C_LIKE,
    strings: ['"', "'", '`'],
    keywords: 'async await break case catch class const continue debugger default delete do else export extends finally for from function if import in instanceof let new of return static super switch this throw try typeof var void while with yield interface type enum implements private public protected readonly as'.split(' '),
    literals: ['true', 'false', 'null', 'undefined', 'NaN'],
  },
  py: {
    line: ['#'],
    strings: ['"""', "'''", '"', "'"],
    keywords: 'and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield match case self print'.split(' '),
    literals: ['True', 'False', 'None'],
  },
  rust: {
    ...C_LIKE,
    strings: ['"'],
    keywords: 'as async await break const continue crate dyn else enum extern fn for if impl in let loop match mod move mut pub ref return self Self static struct super trait type unsafe use where while Some None Ok Err'.split(' '),
    literals: ['true', 'false'],
  },
  go: {
    ...C_LIKE,
    strings: ['"', '`', "'"],
    keywords: 'break case chan const continue default defer else fallthrough for func go goto if import interface map package range return select struct switch type var'.split(' '),
    literals: ['true', 'false', 'nil', 'iota'],
  },
  c: {
    ...C_LIKE,
    strings: ['"', "'"],
    keywords: 'auto break case char class const continue default delete do double else enum extern float for goto if int long namespace new private public protected register return short signed sizeof static struct switch template this typedef union unsigned using virtual void volatile while include define bool std'.split(' '),
    literals: ['true', 'false', 'NULL', 'nullptr'],
  },
  java: {
    ...C_LIKE,
    strings: ['"', "'"],
    keywords: 'abstract boolean break byte case catch char class const continue default do double else enum extends final finally float for if implements import instanceof int interface long new package private protected public return short static super switch this throw throws try void while var fun val when'.split(' '),
    literals: ['true', 'false', 'null'],
  },
  sh: {
    line: ['#'],
    strings: ['"', "'"],
    keywords: 'if then else elif fi for while do done case esac in function return export local echo cd sudo apt install make cargo npm git'.split(' '),
  },
  sql: {
    line: ['--'],
    block: ['/*', '*/'],
    strings: ["'", '"'],
    keywords: 'select from where insert into values update set delete create table index drop alter join left right inner outer on group by order limit offset as and or not null primary key references begin commit'.split(' '),
  },
  json: { strings: ['"'], keywords: [], literals: ['true', 'false', 'null'] },
};

const ALIASES: Record<string, string> = {
  javascript: 'js', jsx: 'js', ts: 'js', typescript: 'js', tsx: 'js', mjs: 'js',
  python: 'py', rs: 'rust', golang: 'go', cpp: 'c', 'c++': 'c', h: 'c', cs: 'java', csharp: 'java',
  kotlin: 'java', kt: 'java', bash: 'sh', shell: 'sh', zsh: 'sh', console: 'sh', postgres: 'sql',
  toml: 'sh', yaml: 'sh', yml: 'sh',
};

export function languageOf(lang: string | undefined): string | null {
  const l = (lang ?? '').trim().toLowerCase();
  if (LANGS[l]) return l;
  return ALIASES[l] ?? null;
}

const NUMBER = /^(0x[0-9a-f_]+|\d[\d_]*(\.\d+)?(e[+-]?\d+)?)/i;
const WORD = /^[A-Za-z_$][\w$]*/;

/** Splits `code` into tokens; unknown languages come back as one plain token. */
export function highlight(code: string, lang: string | undefined): Token[] {
  const name = languageOf(lang);
  if (!name) return [{ kind: 'plain', text: code }];
  const L = LANGS[name];
  const keywords = new Set(L.keywords);
  const literals = new Set(L.literals ?? []);
  const out: Token[] = [];
  let plain = '';
  const push = (kind: TokenKind, text: string) => {
    if (plain) {
      out.push({ kind: 'plain', text: plain });
      plain = '';
    }
    out.push({ kind, text });
  };
  let i = 0;
  outer: while (i < code.length) {
    const rest = code.slice(i, i + 3);
    for (const c of L.line ?? []) {
      if (rest.startsWith(c)) {
        const end = code.indexOf('\n', i);
        const stop = end < 0 ? code.length : end;
        push('comment', code.slice(i, stop));
        i = stop;
        continue outer;
      }
    }
    if (L.block && rest.startsWith(L.block[0])) {
      const end = code.indexOf(L.block[1], i + L.block[0].length);
      const stop = end < 0 ? code.length : end + L.block[1].length;
      push('comment', code.slice(i, stop));
      i = stop;
      continue;
    }
    for (const q of L.strings) {
      if (rest.startsWith(q)) {
        let j = i + q.length;
        while (j < code.length && !code.startsWith(q, j)) {
          if (code[j] === '\\') j += 1;
          else if (q.length === 1 && q !== '`' && code[j] === '\n') break;
          j += 1;
        }
        const stop = Math.min(code.length, j + (code.startsWith(q, j) ? q.length : 0));
        push('string', code.slice(i, stop));
        i = stop;
        continue outer;
      }
    }
    const prev = i > 0 ? code[i - 1] : ' ';
    if (!/[\w$]/.test(prev)) {
      const num = NUMBER.exec(code.slice(i, i + 64));
      if (num) {
        push('number', num[0]);
        i += num[0].length;
        continue;
      }
      const word = WORD.exec(code.slice(i, i + 128));
      if (word) {
        const w = word[0];
        if (keywords.has(w) || (name === 'sql' && keywords.has(w.toLowerCase()))) push('keyword', w);
        else if (literals.has(w)) push('literal', w);
        else plain += w;
        i += w.length;
        continue;
      }
    }
    plain += code[i];
    i += 1;
  }
  if (plain) out.push({ kind: 'plain', text: plain });
  return out;
}
