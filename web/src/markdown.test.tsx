import { describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen } from '@testing-library/react';
import { Markdown } from './markdown';

describe('Markdown', () => {
  it('renders headings, lists, emphasis, tables and code with a copy button', async () => {
    const writeText = vi.fn().mockResolvedValue(undefined);
    Object.assign(navigator, { clipboard: { writeText } });
    const md = '# Title\n\n- **bold** item\n- `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint("hi")\n```\n';
    const { container } = render(<Markdown text={md} />);
    expect(container.querySelector('h3')?.textContent).toBe('Title');
    expect(container.querySelectorAll('li')).toHaveLength(2);
    expect(container.querySelector('strong')?.textContent).toBe('bold');
    expect(container.querySelector('td')?.textContent).toBe('1');
    expect(container.querySelector('pre code')?.textContent).toBe('print("hi")');
    expect(container.querySelector('.tok-string')?.textContent).toBe('"hi"');
    fireEvent.click(screen.getByRole('button', { name: 'Copy code' }));
    expect(writeText).toHaveBeenCalledWith('print("hi")');
    expect(await screen.findByText('Copied')).toBeTruthy();
  });

  it('never renders HTML from the model, and only safe links', () => {
    const md = '<img src=x onerror="alert(1)"> and <script>alert(2)</script>\n\n[bad](javascript:alert(3)) [good](https://example.com)';
    const { container } = render(<Markdown text={md} />);
    expect(container.querySelector('img')).toBeNull();
    expect(container.querySelector('script')).toBeNull();
    expect(container.textContent).toContain('<img src=x onerror="alert(1)">');
    const links = [...container.querySelectorAll('a')];
    expect(links).toHaveLength(1);
    expect(links[0].getAttribute('href')).toBe('https://example.com');
    expect(links[0].getAttribute('rel')).toContain('noopener');
  });

  it('renders an unfinished code fence while streaming', () => {
    const { container } = render(<Markdown text={'Here:\n```js\nconst a = 1'} />);
    expect(container.querySelector('pre code')?.textContent).toBe('const a = 1');
  });

  it('keeps entities as text', () => {
    const { container } = render(<Markdown text={'a & b < c `x && y`'} />);
    expect(container.textContent).toBe('a & b < c x && y');
  });
});
