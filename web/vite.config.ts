/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// During `npm run dev`, /api and /v1 go to a running `hearth serve`.
const target = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.HEARTH_URL ?? 'http://127.0.0.1:8080';

// The shipped bundle runs on Preact's React-compatible core (~4x less JavaScript to
// parse at page load); the components are plain React and Vitest runs them on React.
const preact = {
  react: 'preact/compat',
  'react-dom/client': 'preact/compat/client',
  'react-dom': 'preact/compat',
  'react/jsx-runtime': 'preact/jsx-runtime',
  'react/jsx-dev-runtime': 'preact/jsx-runtime',
};

export default defineConfig(({ mode }) => ({
  plugins: [react()],
  resolve: { alias: mode === 'test' ? {} : preact },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: {
      '/api': target,
      '/v1': target,
      '/health': target,
      '/ready': target,
    },
  },
  test: {
    environment: 'jsdom',
    globals: true,
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['src/test-setup.ts'],
  },
}));
