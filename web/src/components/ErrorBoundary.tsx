import { Component, type ReactNode } from 'react';

/** A render failure shows a readable message and a way out, never a blank page. */
export class ErrorBoundary extends Component<{ children: ReactNode }, { error: Error | null }> {
  state = { error: null as Error | null };

  static getDerivedStateFromError(error: Error) {
    return { error };
  }

  render() {
    if (this.state.error) {
      return (
        <div className="fatal" role="alert">
          <h1>Something went wrong in the chat UI</h1>
          <p>{this.state.error.message}</p>
          <p>Your conversations are stored on the server and are safe.</p>
          <button type="button" onClick={() => location.reload()}>
            Reload
          </button>
        </div>
      );
    }
    return this.props.children;
  }
}
