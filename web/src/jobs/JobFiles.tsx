// A job's files: raster images shown, everything else (SVG and HTML included:
// they can carry script) only offered as a download.

import type { ReactNode } from 'react';
import { download, getApiKey } from '../api';
import type { JobFile } from './api';
import { useFileSrc } from './fileSrc';
import { baseName, formatBytes, shownInline } from './format';

export function JobImage({ url, alt, className }: { url: string; alt: string; className?: string }) {
  const { src, failed } = useFileSrc(url);
  if (failed) return <div className={`image-missing ${className ?? ''}`}>The image cannot be loaded.</div>;
  if (!src) return <div className={`image-loading ${className ?? ''}`} aria-busy="true" />;
  return <img className={className} src={src} alt={alt} />;
}

/** A link that downloads the file (through fetch, with the key, when there is one). */
export function FileLink({ file, onError, children }: { file: JobFile; onError: (e: unknown) => void; children?: ReactNode }) {
  const name = baseName(file.name);
  return (
    <a
      href={file.url}
      download={name}
      className="file-link"
      onClick={(e) => {
        if (getApiKey() == null) return;
        e.preventDefault();
        download(file.url, name).catch(onError);
      }}
    >
      {children ?? name}
    </a>
  );
}

/** What the script wrote: charts inline, the rest as downloads. */
export function Results({ files, onError }: { files: JobFile[]; onError: (e: unknown) => void }) {
  const artifacts = files.filter((f) => f.role === 'artifact');
  if (artifacts.length === 0) return null;
  const images = artifacts.filter((f) => shownInline(f.content_type));
  const others = artifacts.filter((f) => !shownInline(f.content_type));
  return (
    <section className="job-results" aria-label="Results">
      <h2>Results</h2>
      {images.map((f) => (
        <figure key={f.name} className="artifact" data-name={f.name}>
          <JobImage url={f.url} alt={f.name} className="artifact-image" />
          <figcaption>
            {f.name} · {formatBytes(f.size)} · <FileLink file={f} onError={onError}>Download</FileLink>
          </figcaption>
        </figure>
      ))}
      {others.length > 0 ? (
        <ul className="downloads">
          {others.map((f) => (
            <li key={f.name} data-name={f.name}>
              <FileLink file={f} onError={onError}>
                {f.name}
              </FileLink>{' '}
              <span className="muted">
                {formatBytes(f.size)} · {f.content_type}
              </span>
            </li>
          ))}
        </ul>
      ) : null}
    </section>
  );
}
