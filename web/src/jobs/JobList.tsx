import { memo, useEffect, useRef } from 'react';
import type { Job } from './api';
import { ago, statusText } from './format';

export interface JobListProps {
  jobs: Job[];
  activeId: string | null;
  loading: boolean;
  hasMore: boolean;
  onSelect: (id: string) => void;
  onMore: () => void;
}

const JobItem = memo(function JobItem({ job, active, onSelect }: { job: Job; active: boolean; onSelect: (id: string) => void }) {
  const label = job.prompt || 'No instruction';
  return (
    <li className={`conv job-item${active ? ' active' : ''}`} data-id={job.id} data-status={job.status}>
      <a
        href={`/jobs/${job.id}`}
        className="conv-title job-link"
        aria-current={active ? 'page' : undefined}
        onClick={(e) => {
          if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
          e.preventDefault();
          onSelect(job.id);
        }}
      >
        <span className={`job-dot job-dot-${job.status}`} aria-hidden="true" />
        <span className="job-label">
          <span className="job-name">{label}</span>
          <span className="job-sub">
            <span className="job-state">{statusText(job)}</span> · {ago(job.created_at)}
          </span>
        </span>
      </a>
    </li>
  );
});

/** The caller's jobs, newest first, each with its status as it changes. */
export function JobList({ jobs, activeId, loading, hasMore, onSelect, onMore }: JobListProps) {
  const sentinel = useRef<HTMLLIElement>(null);
  // The next page when the end of the list scrolls into view.
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !hasMore || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !loading) onMore();
    });
    io.observe(el);
    return () => io.disconnect();
  }, [hasMore, loading, onMore]);
  return (
    <ul className="conv-list job-list" aria-label="Jobs list">
      {jobs.map((j) => (
        <JobItem key={j.id} job={j} active={j.id === activeId} onSelect={onSelect} />
      ))}
      {jobs.length === 0 && !loading ? <li className="empty">No jobs yet.</li> : null}
      {hasMore ? (
        <li ref={sentinel} className="more">
          <button type="button" onClick={onMore} disabled={loading}>
            {loading ? 'Loading…' : 'Load more'}
          </button>
        </li>
      ) : null}
    </ul>
  );
}
