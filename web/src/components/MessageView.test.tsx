import { afterEach, describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen } from '@testing-library/react';
import { MessageView, type MessageViewProps } from './MessageView';
import type { Message } from '../api';

const reply = (over: Partial<Message> = {}): Message => ({
  id: 'm1', conversation_id: 'c1', seq: 1, role: 'assistant', content: '', model: 'qwen3', prompt_tokens: null,
  completion_tokens: null, ttft_ms: null, duration_ms: null, finish_reason: null, created_at: 0, ...over,
});
const props = (m: Message, streaming: boolean): MessageViewProps => ({
  m, streaming, omitted: false, canRegenerate: false, busy: streaming, onRegenerate: () => {}, onEdit: () => {},
});
const details = (c: HTMLElement) => c.querySelector('details.reasoning') as HTMLDetailsElement | null;

afterEach(() => vi.restoreAllMocks());

describe('MessageView with reasoning', () => {
  it('shows the thinking open while the model thinks, then collapses it with how long it took', () => {
    const now = vi.spyOn(Date, 'now').mockReturnValue(10_000);
    const { container, rerender } = render(<MessageView {...props(reply({ reasoning: 'Let me see.' }), true)} />);
    expect(details(container)?.open).toBe(true);
    expect(container.querySelector('summary')?.textContent).toBe('Thinking…');
    expect(container.querySelector('.reasoning-text')?.textContent).toBe('Let me see.');
    // "Thinking…" says it: no second "Generating" indicator.
    expect(screen.queryByLabelText('Generating')).toBeNull();

    rerender(<MessageView {...props(reply({ reasoning: 'Let me see. Two and two.' }), true)} />);
    expect(container.querySelector('.reasoning-text')?.textContent).toBe('Let me see. Two and two.');

    now.mockReturnValue(14_400);
    rerender(<MessageView {...props(reply({ reasoning: 'Let me see. Two and two.', content: 'Four' }), true)} />);
    expect(details(container)?.open).toBe(false);
    expect(container.querySelector('summary')?.textContent).toBe('Thought for 4 s');
    expect(container.querySelector('.msg-body')?.textContent).toBe('Four');

    rerender(<MessageView {...props(reply({ reasoning: 'Let me see. Two and two.', content: 'Four', finish_reason: 'stop' }), false)} />);
    expect(details(container)?.open).toBe(false);
    expect(container.querySelector('summary')?.textContent).toBe('Thought for 4 s');
  });

  it('a stored reply says how long it thought, as the server stored it', () => {
    const stored = reply({ reasoning: 'Step one.', content: 'Done', finish_reason: 'stop', reasoning_ms: 2400 });
    const { container, rerender } = render(<MessageView {...props(stored, false)} />);
    expect(details(container)?.open).toBe(false);
    expect(container.querySelector('summary')?.textContent).toBe('Thought for 2 s');
    // Under a second is "1 s", not "0 s".
    rerender(<MessageView {...props({ ...stored, reasoning_ms: 120 }, false)} />);
    expect(container.querySelector('summary')?.textContent).toBe('Thought for 1 s');
  });

  it('a stored reply from before durations were kept is collapsed, says "Thoughts", and opens on a click', () => {
    const { container } = render(<MessageView {...props(reply({ reasoning: 'Step one.', content: 'Done', finish_reason: 'stop' }), false)} />);
    expect(details(container)?.open).toBe(false);
    expect(container.querySelector('summary')?.textContent).toBe('Thoughts');
    fireEvent.click(screen.getByText('Thoughts'));
    expect(details(container)?.open).toBe(true);
  });

  it('renders the thinking as plain text, line breaks kept, never as markup', () => {
    const reasoning = '<img src=x onerror="alert(1)">\n**not bold**';
    const { container } = render(<MessageView {...props(reply({ reasoning, content: 'ok', finish_reason: 'stop' }), false)} />);
    expect(container.querySelector('img')).toBeNull();
    expect(container.querySelector('strong')).toBeNull();
    expect(container.querySelector('.reasoning-text')?.textContent).toBe(reasoning);
  });

  it('Copy copies the answer only', () => {
    const writeText = vi.fn().mockResolvedValue(undefined);
    Object.assign(navigator, { clipboard: { writeText } });
    render(<MessageView {...props(reply({ reasoning: 'secret plan', content: 'The answer', finish_reason: 'stop' }), false)} />);
    fireEvent.click(screen.getByRole('button', { name: 'Copy' }));
    expect(writeText).toHaveBeenCalledWith('The answer');
  });

  it('a reply without reasoning renders as before: no thinking block', () => {
    for (const reasoning of [undefined, null, '']) {
      const { container, unmount } = render(<MessageView {...props(reply({ reasoning }), true)} />);
      expect(details(container)).toBeNull();
      expect([...(container.firstElementChild?.children ?? [])].map((e) => e.className)).toEqual(['msg-body', 'msg-meta']);
      expect(screen.getByLabelText('Generating')).toBeTruthy();
      unmount();
    }
  });
});
