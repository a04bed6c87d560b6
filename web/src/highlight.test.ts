import { describe, expect, it } from 'vitest';
import { highlight, languageOf } from './highlight';

describe('highlight', () => {
  it('finds keywords, strings, numbers and comments', () => {
    const t = highlight('const x = "a // b"; // note\nreturn 42;', 'ts');
    const kinds = (k: string) => t.filter((x) => x.kind === k).map((x) => x.text);
    expect(kinds('keyword')).toEqual(['const', 'return']);
    expect(kinds('string')).toEqual(['"a // b"']);
    expect(kinds('comment')).toEqual(['// note']);
    expect(kinds('number')).toEqual(['42']);
    expect(t.map((x) => x.text).join('')).toBe('const x = "a // b"; // note\nreturn 42;');
  });

  it('knows python and aliases; unknown languages stay plain', () => {
    expect(languageOf('Python')).toBe('py');
    expect(languageOf('rs')).toBe('rust');
    const t = highlight('def f():\n    return None  # done', 'python');
    expect(t.find((x) => x.kind === 'literal')?.text).toBe('None');
    expect(t.find((x) => x.kind === 'comment')?.text).toBe('# done');
    expect(highlight('anything', 'brainfuck')).toEqual([{ kind: 'plain', text: 'anything' }]);
  });

  it('does not treat identifiers with digits as numbers', () => {
    expect(highlight('x1 = 2', 'py').filter((x) => x.kind === 'number').map((x) => x.text)).toEqual(['2']);
  });
});
