import { lazy, Suspense, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import {
  api,
  ApiError,
  AUTH_REQUIRED_EVENT,
  describeError,
  download,
  getApiKey,
  replyUrl,
  setApiKey,
  streamReply,
  type Conversation,
  type ConversationDetail,
  type Me,
  type Message,
  type ModelEntry,
  type Page,
} from './api';
import { planContext } from './context';
import { ChatView } from './components/ChatView';
import { KeyDialog } from './components/KeyDialog';
import { KeysPage } from './components/KeysPage';
import { Notices, type Notice } from './components/Notices';
import { Shortcuts } from './components/Shortcuts';
import { Sidebar } from './components/Sidebar';
import { SidebarHead, type View } from './components/SidebarHead';

// The Jobs page is its own chunk: the chat's first load does not carry it.
const JobsPage = lazy(() => import('./jobs/JobsPage'));

const PAGE = 50;
const MODELS_EVERY_MS = 15_000;
const LAST_MODEL = 'hearth.lastModel';

function idFromPath(): string | null {
  const m = /^\/c\/([0-9a-fA-F-]{36})\/?$/.exec(location.pathname);
  return m ? m[1] : null;
}

/** `/jobs` (the upload form) or `/jobs/{id}`; null on the chat's paths. */
function jobsFromPath(): { jobId: string | null } | null {
  const m = /^\/jobs(?:\/([0-9a-fA-F-]{36}))?\/?$/.exec(location.pathname);
  return m ? { jobId: m[1] ?? null } : null;
}

/** `/keys`: the admin's page of keys. */
function keysFromPath(): boolean {
  return /^\/keys\/?$/.test(location.pathname);
}

function titleFrom(text: string): string {
  const line = text.trim().split('\n')[0].trim();
  return line.length <= 60 ? line : `${line.slice(0, 60).replace(/\s+\S*$/, '')}…`;
}

// The first page of conversations is asked for as soon as the script runs, while
// React is still mounting: it is most of the time to interactive.
let firstPage: Promise<Page> | null = null;
export function prefetchFirstPage(): void {
  firstPage = api.list({ limit: PAGE });
  firstPage.catch(() => undefined);
}

let noticeSeq = 0;
let tempSeq = 0;

export function App() {
  // ---- conversation list ----
  const [convs, setConvs] = useState<Conversation[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [listLoading, setListLoading] = useState(true);
  const [search, setSearch] = useState('');
  const listReq = useRef(0);

  // ---- the open conversation ----
  const [activeId, setActiveId] = useState<string | null>(idFromPath);
  const [detail, setDetail] = useState<ConversationDetail | null>(null);
  const [detailLoading, setDetailLoading] = useState(false);
  const [streamingId, setStreamingId] = useState<string | null>(null);
  const controller = useRef<AbortController | null>(null);
  const [draftModel, setDraftModel] = useState<string | null>(() => localStorage.getItem(LAST_MODEL));
  const [draftSystem, setDraftSystem] = useState<string | null>(null);

  // ---- server state ----
  const [models, setModels] = useState<ModelEntry[]>([]);
  const [reachable, setReachable] = useState<boolean | null>(null);
  const [needKey, setNeedKey] = useState(false);
  const [keyWrong, setKeyWrong] = useState(false);
  const [keyVersion, setKeyVersion] = useState(0);

  // ---- the Jobs page, when it is the one open ----
  const [jobsRoute, setJobsRoute] = useState(jobsFromPath);
  // ---- the Keys page (an admin's), when it is the one open ----
  const [keysOpen, setKeysOpen] = useState(keysFromPath);

  // ---- chrome ----
  const [notices, setNotices] = useState<Notice[]>([]);
  const [showShortcuts, setShowShortcuts] = useState(false);
  const [sidebarOpen, setSidebarOpen] = useState(false);
  const composer = useRef<HTMLTextAreaElement>(null);

  const dismiss = useCallback((id: number) => setNotices((ns) => ns.filter((n) => n.id !== id)), []);
  const notify = useCallback(
    (n: Omit<Notice, 'id'>) => {
      const id = ++noticeSeq;
      setNotices((ns) => [...ns.slice(-3), { ...n, id }]);
      if (n.ttl) setTimeout(() => dismiss(id), n.ttl);
      return id;
    },
    [dismiss],
  );
  const fail = useCallback(
    (e: unknown) => {
      if ((e as Error)?.name === 'AbortError') return;
      if (e instanceof ApiError && e.status === 401) return; // the key dialog says it
      if (e instanceof ApiError && e.status === 0) setReachable(false);
      notify({ kind: 'error', text: describeError(e) });
    },
    [notify],
  );

  // ---- loading ----
  const loadList = useCallback(
    async (reset: boolean, from: string | null = null) => {
      const req = ++listReq.current;
      setListLoading(true);
      try {
        const plain = reset && !search.trim();
        const early = plain ? firstPage : null;
        firstPage = null;
        const page = await (early ?? api.list({ search: search.trim() || undefined, cursor: reset ? null : from, limit: PAGE }));
        if (req !== listReq.current) return;
        setConvs((cs) => (reset ? page.data : [...cs, ...page.data.filter((c) => !cs.some((x) => x.id === c.id))]));
        setCursor(page.next_cursor);
        setHasMore(page.next_cursor != null);
        setReachable(true);
      } catch (e) {
        if (req === listReq.current) fail(e);
      } finally {
        if (req === listReq.current) setListLoading(false);
      }
    },
    [search, fail],
  );

  // Search as the user types, a moment after they pause.
  useEffect(() => {
    const t = setTimeout(() => loadList(true), search ? 200 : 0);
    return () => clearTimeout(t);
  }, [search, loadList]);

  // The caller's key: its token budget (null: none, or a server that does not
  // say) and whether it is an admin's (the Keys page).
  const [me, setMe] = useState<Me | null>(null);
  const budget = me?.budget ?? null;
  const loadMe = useCallback(async () => {
    try {
      setMe(await api.me());
    } catch {
      /* a 401 opens the key dialog; otherwise the budget is just not shown */
    }
  }, []);
  useEffect(() => {
    loadMe();
  }, [loadMe, keyVersion]);

  const loadModels = useCallback(async () => {
    try {
      setModels(await api.models());
      setReachable(true);
    } catch (e) {
      if (e instanceof ApiError && e.status === 0) setReachable(false);
    }
  }, []);

  useEffect(() => {
    loadModels();
    const t = setInterval(loadModels, MODELS_EVERY_MS);
    const onFocus = () => loadModels();
    window.addEventListener('focus', onFocus);
    return () => {
      clearInterval(t);
      window.removeEventListener('focus', onFocus);
    };
  }, [loadModels]);

  useEffect(() => {
    if (!activeId) {
      setDetail(null);
      return;
    }
    if (detail?.id === activeId) return;
    const ac = new AbortController();
    setDetailLoading(true);
    api
      .get(activeId, ac.signal)
      .then((d) => setDetail(d))
      .catch((e) => {
        if (e instanceof ApiError && (e.status === 404 || e.status === 400)) {
          notify({ kind: 'error', text: 'That conversation does not exist (it may have been deleted).', ttl: 8000 });
          history.replaceState(null, '', '/');
          setActiveId(null);
        } else fail(e);
      })
      .finally(() => setDetailLoading(false));
    return () => ac.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [activeId]);

  useEffect(() => {
    const onPop = () => {
      const jobs = jobsFromPath();
      const keys = keysFromPath();
      setJobsRoute(jobs);
      setKeysOpen(keys);
      if (!jobs && !keys) setActiveId(idFromPath());
    };
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);

  // ---- API key ----
  useEffect(() => {
    const onAuth = () => {
      setKeyWrong(getApiKey() != null);
      setNeedKey(true);
    };
    window.addEventListener(AUTH_REQUIRED_EVENT, onAuth);
    return () => window.removeEventListener(AUTH_REQUIRED_EVENT, onAuth);
  }, []);

  const submitKey = (key: string) => {
    setApiKey(key);
    setNeedKey(false);
    setKeyWrong(false);
    setKeyVersion((n) => n + 1);
    loadList(true);
    loadModels();
    if (activeId) {
      setDetail(null);
      setActiveId(null);
      setTimeout(() => setActiveId(idFromPath()), 0);
    }
  };

  // ---- navigation ----
  const open = useCallback((id: string | null) => {
    controller.current?.abort();
    const path = id ? `/c/${id}` : '/';
    if (location.pathname !== path) history.pushState(null, '', path);
    setJobsRoute(null);
    setKeysOpen(false);
    setActiveId(id);
    setSidebarOpen(false);
  }, []);

  const openJob = useCallback((jobId: string | null) => {
    const path = jobId ? `/jobs/${jobId}` : '/jobs';
    if (location.pathname !== path) history.pushState(null, '', path);
    setJobsRoute({ jobId });
    setKeysOpen(false);
    setSidebarOpen(false);
  }, []);

  // Between chat and jobs; a reply that streams goes on (it is kept on the server).
  const switchView = useCallback(
    (v: View) => {
      if (v === 'jobs') {
        openJob(null);
        return;
      }
      const path = v === 'keys' ? '/keys' : activeId ? `/c/${activeId}` : '/';
      if (location.pathname !== path) history.pushState(null, '', path);
      setJobsRoute(null);
      setKeysOpen(v === 'keys');
      setSidebarOpen(false);
    },
    [activeId, openJob],
  );

  const newChat = useCallback(() => {
    open(null);
    setDraftSystem(null);
    setTimeout(() => composer.current?.focus(), 0);
  }, [open]);

  // ---- list edits ----
  const touch = useCallback((id: string, patch: Partial<Conversation>, toTop = false, titleIfEmpty?: string) => {
    setConvs((cs) => {
      const i = cs.findIndex((c) => c.id === id);
      if (i < 0) return cs;
      const c = { ...cs[i], ...patch };
      if (titleIfEmpty && !c.title) c.title = titleIfEmpty;
      const rest = cs.filter((_, j) => j !== i);
      return toTop ? [c, ...rest] : cs.map((x, j) => (j === i ? c : x));
    });
  }, []);

  const rename = useCallback(
    async (id: string, title: string) => {
      try {
        const c = await api.update(id, { title });
        touch(id, { title: c.title });
        setDetail((d) => (d && d.id === id ? { ...d, title: c.title } : d));
      } catch (e) {
        fail(e);
      }
    },
    [touch, fail],
  );

  const remove = useCallback(
    async (c: Conversation) => {
      try {
        await api.remove(c.id);
      } catch (e) {
        fail(e);
        return;
      }
      setConvs((cs) => cs.filter((x) => x.id !== c.id));
      if (c.id === activeId) open(null);
      notify({
        kind: 'info',
        text: `Deleted “${c.title || 'New chat'}”.`,
        ttl: 8000,
        action: {
          label: 'Undo',
          run: async () => {
            try {
              const back = await api.restore(c.id);
              setConvs((cs) => [...cs, back].sort((a, b) => b.updated_at - a.updated_at || (a.id < b.id ? 1 : -1)));
            } catch (e) {
              fail(e);
            }
          },
        },
      });
    },
    [activeId, open, notify, fail],
  );

  // ---- conversation settings ----
  const currentModel = detail ? detail.model : draftModel;
  const currentSystem = detail ? detail.system_prompt : draftSystem;

  const setModel = useCallback(
    async (model: string | null) => {
      if (model) localStorage.setItem(LAST_MODEL, model);
      else localStorage.removeItem(LAST_MODEL);
      if (!detail) {
        setDraftModel(model);
        return;
      }
      try {
        const c = await api.update(detail.id, { model });
        setDetail((d) => (d && d.id === c.id ? { ...d, model: c.model } : d));
      } catch (e) {
        fail(e);
      }
    },
    [detail, fail],
  );

  const setSystemPrompt = useCallback(
    async (s: string | null) => {
      if (!detail) {
        setDraftSystem(s);
        return;
      }
      try {
        const c = await api.update(detail.id, { system_prompt: s });
        setDetail((d) => (d && d.id === c.id ? { ...d, system_prompt: c.system_prompt } : d));
      } catch (e) {
        fail(e);
      }
    },
    [detail, fail],
  );

  // ---- replies ----
  const run = useCallback(
    async (id: string, path: string, body: unknown, pendingUser: string | null) => {
      const ac = new AbortController();
      controller.current = ac;
      const now = Date.now();
      const tempUser = pendingUser != null ? `pending-user-${++tempSeq}` : null;
      let replyId = `pending-reply-${++tempSeq}`;
      const blank = (over: Partial<Message>): Message => ({
        id: '',
        conversation_id: id,
        seq: 0,
        role: 'assistant',
        content: '',
        model: null,
        prompt_tokens: null,
        completion_tokens: null,
        ttft_ms: null,
        duration_ms: null,
        finish_reason: null,
        created_at: now,
        ...over,
      });
      const patch = (mid: string, f: (m: Message) => Message) =>
        setDetail((d) => (d && d.id === id ? { ...d, messages: d.messages.map((m) => (m.id === mid ? f(m) : m)) } : d));
      setDetail((d) =>
        d && d.id === id
          ? {
              ...d,
              messages: [
                ...d.messages,
                ...(tempUser ? [blank({ id: tempUser, role: 'user', content: pendingUser ?? '' })] : []),
                blank({ id: replyId }),
              ],
            }
          : d,
      );
      setStreamingId(replyId);
      if (pendingUser != null) {
        touch(id, { updated_at: now }, true, titleFrom(pendingUser));
        setDetail((d) => (d && d.id === id && !d.title ? { ...d, title: titleFrom(pendingUser) } : d));
      }
      try {
        for await (const ev of streamReply(path, body, ac.signal)) {
          if (ev.type === 'start') {
            const old = replyId;
            replyId = ev.message.id;
            setStreamingId(replyId);
            setDetail((d) =>
              d && d.id === id
                ? {
                    ...d,
                    model: d.model,
                    messages: d.messages.map((m) => (m.id === old ? ev.message : tempUser && m.id === tempUser && ev.user_message ? ev.user_message : m)),
                  }
                : d,
            );
          } else if (ev.type === 'delta') {
            const rid = replyId;
            patch(rid, (m) => ({ ...m, content: m.content + ev.content }));
          } else if (ev.type === 'reasoning') {
            const rid = replyId;
            patch(rid, (m) => ({ ...m, reasoning: (m.reasoning ?? '') + ev.content }));
          } else if (ev.type === 'done') {
            patch(replyId, () => ev.message);
          } else if (ev.type === 'error') {
            if (ev.message) patch(replyId, () => ev.message as Message);
            notify({ kind: 'error', text: `The reply was cut short: ${ev.error.message}` });
          }
        }
      } catch (e) {
        if ((e as Error)?.name === 'AbortError') {
          patch(replyId, (m) => ({ ...m, finish_reason: 'stopped' }));
        } else {
          fail(e);
          // Drop what was only shown optimistically; what the server kept (the user's
          // message, usually) comes back with the refetch.
          const rid = replyId;
          setDetail((d) =>
            d && d.id === id ? { ...d, messages: d.messages.filter((m) => m.id !== tempUser && !(m.id === rid && !m.content)) } : d,
          );
          api.get(id).then(setDetail).catch(() => undefined);
        }
      } finally {
        if (controller.current === ac) controller.current = null;
        setStreamingId(null);
        loadMe();
      }
    },
    [touch, notify, fail, loadMe],
  );

  const send = useCallback(
    async (text: string) => {
      let id = detail?.id ?? null;
      if (!id) {
        try {
          const c = await api.create({ model: draftModel, system_prompt: draftSystem });
          id = c.id;
          setConvs((cs) => [c, ...cs]);
          setDetail({ ...c, messages: [], context: { used: 0, limit: null, omitted: 0 } });
          history.pushState(null, '', `/c/${c.id}`);
          setActiveId(c.id);
        } catch (e) {
          fail(e);
          return;
        }
      }
      await run(id, replyUrl(id, 'messages'), { content: text }, text);
    },
    [detail, draftModel, draftSystem, run, fail],
  );

  const stop = useCallback(() => controller.current?.abort(), []);

  const regenerate = useCallback(() => {
    if (!detail || streamingId) return;
    const lastUser = detail.messages.map((m) => m.role).lastIndexOf('user');
    if (lastUser < 0) return;
    setDetail({ ...detail, messages: detail.messages.slice(0, lastUser + 1) });
    run(detail.id, replyUrl(detail.id, 'regenerate'), {}, null);
  }, [detail, streamingId, run]);

  const edit = useCallback(
    (m: Message, content: string) => {
      if (!detail || streamingId) return;
      const i = detail.messages.findIndex((x) => x.id === m.id);
      setDetail({ ...detail, messages: detail.messages.slice(0, i) });
      run(detail.id, replyUrl(detail.id, 'messages'), { content, replace: m.id }, content);
    },
    [detail, streamingId, run],
  );

  const exportAs = useCallback(
    (format: 'json' | 'markdown') => {
      if (detail) download(api.exportUrl(detail.id, format)).catch(fail);
    },
    [detail, fail],
  );

  // ---- keyboard ----
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const mod = e.ctrlKey || e.metaKey;
      if (mod && e.key.toLowerCase() === 'k') {
        e.preventDefault();
        newChat();
      } else if (mod && e.key === '/') {
        e.preventDefault();
        setShowShortcuts((s) => !s);
      } else if (e.key === 'Escape') {
        if (controller.current) {
          e.preventDefault();
          stop();
        } else {
          setShowShortcuts(false);
          setSidebarOpen(false);
        }
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [newChat, stop]);

  // ---- derived ----
  const modelEntry = useMemo(
    () => models.find((m) => m.id === currentModel) ?? (currentModel == null ? models[0] : undefined),
    [models, currentModel],
  );
  const messages = detail?.messages ?? [];
  const plan = useMemo(
    () => planContext(messages, currentSystem, modelEntry?.context_length ?? null),
    [messages, currentSystem, modelEntry],
  );
  const status = useMemo((): { level: 'ok' | 'warn' | 'down'; text: string } => {
    if (reachable === false) return { level: 'down', text: 'Server unreachable' };
    if (reachable == null) return { level: 'warn', text: 'Connecting…' };
    if (!modelEntry) return { level: 'warn', text: 'Connected' };
    if (modelEntry.status === 'ready') return { level: 'ok', text: `${modelEntry.id} ready` };
    switch (modelEntry.status) {
      case 'loading':
      case 'starting':
      case 'restarting':
        return { level: 'warn', text: `${modelEntry.id} ${modelEntry.status}` };
      // A stopped server starts with the next message.
      case 'stopped':
        return { level: 'warn', text: `${modelEntry.id} stopped (starts on demand)` };
      case 'failed':
        return { level: 'down', text: `${modelEntry.id} failed${modelEntry.engine?.reason ? `: ${modelEntry.engine.reason}` : ''}` };
      default:
        return { level: 'down', text: `${modelEntry.id} unavailable` };
    }
  }, [reachable, modelEntry]);

  // Interactive: the first page of conversations is on screen and the composer works.
  const marked = useRef(false);
  useEffect(() => {
    if (listLoading || marked.current) return;
    marked.current = true;
    requestAnimationFrame(() => {
      performance.mark('hearth:interactive');
      document.body.dataset.interactive = '1';
    });
  }, [listLoading]);

  // While the server is unreachable, look again every few seconds.
  useEffect(() => {
    if (reachable !== false) return;
    const t = setInterval(loadModels, 3000);
    return () => clearInterval(t);
  }, [reachable, loadModels]);

  return (
    <div className={`app${sidebarOpen ? ' sidebar-open' : ''}`}>
      {jobsRoute ? (
        <Suspense
          fallback={
            <>
              <nav className="sidebar" aria-label="Jobs">
                <SidebarHead status={status} view="jobs" onView={switchView} admin={me?.admin} />
              </nav>
              <main className="chat">
                <div className="placeholder">Loading…</div>
              </main>
            </>
          }
        >
          <JobsPage
            jobId={jobsRoute.jobId}
            keyVersion={keyVersion}
            status={status}
            admin={me?.admin}
            onView={switchView}
            onOpen={openJob}
            onMenu={() => setSidebarOpen((s) => !s)}
            notify={notify}
            fail={fail}
          />
        </Suspense>
      ) : keysOpen ? (
        <KeysPage keyVersion={keyVersion} status={status} onView={switchView} onMenu={() => setSidebarOpen((s) => !s)} fail={fail} />
      ) : (
        <>
          <Sidebar
            conversations={convs}
            activeId={activeId}
            search={search}
            loading={listLoading}
            hasMore={hasMore}
            status={status}
            onSearch={setSearch}
            onSelect={open}
            onNew={newChat}
            onRename={rename}
            onDelete={remove}
            onMore={() => loadList(false, cursor)}
            onView={switchView}
            admin={me?.admin}
            budget={budget}
          />
          <ChatView
            ref={composer}
            conversationId={detail?.id ?? null}
            title={detail?.title ?? ''}
            messages={messages}
            loading={detailLoading && !detail}
            streamingId={streamingId}
            models={models}
            model={currentModel}
            systemPrompt={currentSystem}
            plan={plan}
            onModel={setModel}
            onSystemPrompt={setSystemPrompt}
            onSend={send}
            onStop={stop}
            onRegenerate={regenerate}
            onEdit={edit}
            onExport={exportAs}
            onMenu={() => setSidebarOpen((s) => !s)}
          />
        </>
      )}
      <div className="scrim" onClick={() => setSidebarOpen(false)} />
      <Notices notices={notices} dismiss={dismiss} />
      {showShortcuts ? <Shortcuts onClose={() => setShowShortcuts(false)} /> : null}
      {needKey ? <KeyDialog onSubmit={submitKey} wrong={keyWrong} /> : null}
    </div>
  );
}
