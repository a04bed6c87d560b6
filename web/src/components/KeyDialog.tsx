import { useState } from 'react';

/** Asks for an API key; it is kept in sessionStorage (this tab only). */
export function KeyDialog({ onSubmit, wrong }: { onSubmit: (key: string) => void; wrong: boolean }) {
  const [key, setKey] = useState('');
  return (
    <div className="overlay" role="dialog" aria-modal="true" aria-labelledby="key-title">
      <form
        className="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          if (key.trim()) onSubmit(key.trim());
        }}
      >
        <h2 id="key-title">API key required</h2>
        <p>This Hearth server requires an API key. It is kept for this browser tab only.</p>
        {wrong ? <p className="error-text">That key was not accepted.</p> : null}
        <input
          type="password"
          autoFocus
          autoComplete="off"
          placeholder="sk-…"
          aria-label="API key"
          value={key}
          onChange={(e) => setKey(e.target.value)}
        />
        <div className="dialog-actions">
          <button type="submit" className="primary" disabled={!key.trim()}>
            Continue
          </button>
        </div>
      </form>
    </div>
  );
}
