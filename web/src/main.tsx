import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App, prefetchFirstPage } from './App';
import { ErrorBoundary } from './components/ErrorBoundary';
import './styles.css';

prefetchFirstPage();
const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <ErrorBoundary>
        <App />
      </ErrorBoundary>
    </StrictMode>,
  );
}
