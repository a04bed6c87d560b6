// A job's file as an image source. Without an API key the URL itself does; with one,
// an <img> cannot send it, so the file is fetched with the key and shown as a
// `data:` URL (the page's CSP allows `data:` images, not `blob:` ones).

import { useEffect, useState } from 'react';
import { authHeaders, getApiKey } from '../api';

function dataUrl(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
}

/** The `src` to show `url` with: `url`, a `data:` URL, or null while it loads or after it failed. */
export function useFileSrc(url: string): { src: string | null; failed: boolean } {
  const keyed = getApiKey() != null;
  const [state, setState] = useState<{ url: string; src: string | null; failed: boolean }>({ url: '', src: null, failed: false });
  useEffect(() => {
    if (!keyed) return;
    const ac = new AbortController();
    setState({ url, src: null, failed: false });
    fetch(url, { headers: authHeaders(), signal: ac.signal })
      .then((res) => (res.ok ? res.blob() : Promise.reject(new Error(String(res.status)))))
      .then(dataUrl)
      .then((src) => setState({ url, src, failed: false }))
      .catch(() => {
        if (!ac.signal.aborted) setState({ url, src: null, failed: true });
      });
    return () => ac.abort();
  }, [url, keyed]);
  if (!keyed) return { src: url, failed: false };
  return state.url === url ? { src: state.src, failed: state.failed } : { src: null, failed: false };
}
