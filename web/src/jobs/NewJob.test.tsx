import { afterEach, describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { job } from './fixtures';
import { NewJob } from './NewJob';

const png = (name = 'board.png') => new File([new Uint8Array([0x89, 0x50, 0x4e, 0x47])], name, { type: 'image/png' });

afterEach(() => vi.unstubAllGlobals());

function show() {
  const onCreated = vi.fn();
  render(<NewJob onCreated={onCreated} onError={vi.fn()} onMenu={vi.fn()} />);
  return onCreated;
}

describe('NewJob', () => {
  it('takes an image dropped on the box', async () => {
    show();
    const drop = screen.getByTestId('drop');
    fireEvent.dragOver(drop, { dataTransfer: { files: [], dropEffect: 'none' } });
    expect(drop.className).toContain('drag');
    fireEvent.drop(drop, { dataTransfer: { files: [png('dropped.png')] } });
    expect(drop.className).not.toContain(' drag');
    expect((await screen.findByRole('img', { name: 'Preview of dropped.png' })).getAttribute('src')).toMatch(/^data:image\/png/);
    expect(screen.getByText('dropped.png')).toBeTruthy();
  });

  it('takes an image pasted anywhere on the page', async () => {
    show();
    const paste = new Event('paste', { bubbles: true, cancelable: true }) as Event & { clipboardData: unknown };
    paste.clipboardData = { files: [png('clipboard.png')] };
    window.dispatchEvent(paste);
    expect(await screen.findByRole('img', { name: 'Preview of clipboard.png' })).toBeTruthy();
    expect(paste.defaultPrevented).toBe(true);
  });

  it('cannot run without an image; Remove takes it back; Ctrl+Enter sends', async () => {
    const fetch = vi.fn().mockResolvedValue(new Response(JSON.stringify(job()), { status: 201 }));
    vi.stubGlobal('fetch', fetch);
    const onCreated = show();
    const run = screen.getByRole('button', { name: 'Run job' }) as HTMLButtonElement;
    expect(run.disabled).toBe(true);
    fireEvent.change(screen.getByLabelText('Image file'), { target: { files: [png()] } });
    await screen.findByRole('img', { name: 'Preview of board.png' });
    fireEvent.click(screen.getByRole('button', { name: 'Remove' }));
    expect(screen.queryByRole('img')).toBeNull();
    expect(run.disabled).toBe(true);
    fireEvent.change(screen.getByLabelText('Image file'), { target: { files: [png()] } });
    fireEvent.click(screen.getByRole('button', { name: 'Extract the table as CSV' }));
    const box = screen.getByLabelText('Instruction') as HTMLTextAreaElement;
    expect(box.value).toBe('Extract the table as CSV');
    fireEvent.keyDown(box, { key: 'Enter', ctrlKey: true });
    await waitFor(() => expect(onCreated).toHaveBeenCalledWith(expect.objectContaining({ id: job().id })));
    expect((fetch.mock.calls[0][1].body as FormData).get('prompt')).toBe('Extract the table as CSV');
  });
});
