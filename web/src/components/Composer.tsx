import { forwardRef, useState } from 'react';

export interface ComposerProps {
  busy: boolean;
  disabled: boolean;
  onSend: (text: string) => void;
  onStop: () => void;
}

/** Enter sends, Shift+Enter adds a line; while a reply streams the button stops it. */
export const Composer = forwardRef<HTMLTextAreaElement, ComposerProps>(function Composer({ busy, disabled, onSend, onStop }, ref) {
  const [text, setText] = useState('');
  const send = () => {
    if (!text.trim() || busy || disabled) return;
    onSend(text);
    setText('');
  };
  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <textarea
        ref={ref}
        aria-label="Message"
        placeholder="Message Hearth"
        title="Enter sends, Shift+Enter adds a line"
        rows={Math.min(8, Math.max(1, text.split('\n').length))}
        value={text}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
            e.preventDefault();
            send();
          }
        }}
      />
      {busy ? (
        <button type="button" className="stop" onClick={onStop} title="Stop (Esc)">
          ■ Stop
        </button>
      ) : (
        <button type="submit" className="primary send" disabled={!text.trim() || disabled}>
          Send
        </button>
      )}
    </form>
  );
});
