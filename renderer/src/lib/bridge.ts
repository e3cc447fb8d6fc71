// The renderer's one way out: implements WorkbenchApi over Electron's preload (window.digpt) when present, else over
// the `digpt serve` WebSocket. Every response and event is checked against the contract before the UI sees it.
import {
  isEventName,
  parseEvent,
  parseResponse,
  type EventName,
  type EventOf,
  type RequestName,
  type RequestOf,
  type ResponseOf,
  type Result,
  type WorkbenchApi,
} from '../../../app/api/contract.js';
import { config as zodConfig } from 'zod';
import { backoffDelay, closeMessage, CLOSE_REFUSED, wsUrl } from './transport.js';

// zod compiles object parsers with new Function unless told not to; the page's CSP forbids eval.
zodConfig({ jitless: true });

/** What Electron's preload exposes through contextBridge. */
export interface DigptPreload {
  request(name: string, payload: unknown): Promise<Result<unknown>>;
  on(name: string, cb: (payload: unknown) => void): () => void;
  /** webUtils.getPathForFile: a dropped File's path on disk. */
  pathForFile?(file: File): string;
  /** The native folder dialog (null when cancelled). */
  chooseFolder?(): Promise<string | null>;
  /** The native save dialog for an export (null when cancelled). */
  chooseExportPath?(defaultName: string): Promise<string | null>;
}

declare global {
  interface Window {
    digpt?: DigptPreload;
  }
}

export type ConnectionStatus =
  | { state: 'open' }
  | { state: 'connecting'; message: string }
  | { state: 'closed'; message: string; refused: boolean };

export interface Bridge extends WorkbenchApi {
  /** 'electron' or 'websocket'. */
  readonly transport: 'electron' | 'websocket';
  /** Called now and on every change; returns the unsubscribe. */
  onStatus(cb: (s: ConnectionStatus) => void): () => void;
  /** A dropped File's path (Electron only), else null. */
  pathForFile(file: File): string | null;
  /** The native folder dialog, when there is one (Electron). */
  readonly chooseFolder: (() => Promise<string | null>) | null;
  /** The native save dialog for an export, when there is one (Electron). */
  readonly chooseExportPath: ((defaultName: string) => Promise<string | null>) | null;
}

type Handler = (payload: unknown) => void;

/** Listeners per event name, shared by both transports. */
class Listeners {
  readonly map = new Map<string, Set<Handler>>();
  add(name: string, h: Handler): { first: boolean; remove: () => boolean } {
    let set = this.map.get(name);
    const first = !set;
    if (!set) {
      set = new Set();
      this.map.set(name, set);
    }
    set.add(h);
    return {
      first,
      remove: () => {
        set.delete(h);
        if (set.size === 0) this.map.delete(name);
        return !this.map.has(name);
      },
    };
  }
  emit(name: string, raw: unknown): void {
    const set = this.map.get(name);
    if (!set || !isEventName(name)) return;
    let payload: unknown;
    try {
      payload = parseEvent(name, raw);
    } catch (e) {
      console.warn(`bridge: dropped an invalid event: ${(e as Error).message}`);
      return;
    }
    for (const h of [...set]) h(payload);
  }
}

function unwrap<N extends RequestName>(name: N, result: Result<unknown>): ResponseOf<N> {
  if (!result.ok) throw new Error(result.error);
  return parseResponse(name, result.value);
}

/** The preload transport: requests are IPC invokes, events IPC messages; always "open". */
function electronBridge(d: DigptPreload): Bridge {
  const listeners = new Listeners();
  const unsubs = new Map<string, () => void>();
  return {
    transport: 'electron',
    async request<N extends RequestName>(name: N, payload: RequestOf<N>): Promise<ResponseOf<N>> {
      return unwrap(name, await d.request(name, payload));
    },
    on<N extends EventName>(name: N, handler: (payload: EventOf<N>) => void): () => void {
      const { first, remove } = listeners.add(name, handler as Handler);
      if (first)
        unsubs.set(
          name,
          d.on(name, (p) => listeners.emit(name, p)),
        );
      return () => {
        if (remove()) {
          unsubs.get(name)?.();
          unsubs.delete(name);
        }
      };
    },
    onStatus(cb) {
      cb({ state: 'open' });
      return () => {};
    },
    chooseFolder: d.chooseFolder ? () => d.chooseFolder!() : null,
    chooseExportPath: d.chooseExportPath ? (name) => d.chooseExportPath!(name) : null,
    pathForFile(file) {
      try {
        return d.pathForFile?.(file) || null;
      } catch {
        return null;
      }
    },
  };
}

interface Pending {
  name: RequestName;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/** The WebSocket transport: envelopes of the contract, reconnect with backoff, requests queued while closed. */
function socketBridge(url: string): Bridge {
  const listeners = new Listeners();
  const statusCbs = new Set<(s: ConnectionStatus) => void>();
  const pending = new Map<number, Pending>();
  let queue: string[] = [];
  let nextId = 1;
  let ws: WebSocket | null = null;
  let attempt = 0;
  let status: ConnectionStatus = { state: 'connecting', message: 'connecting to the workbench…' };

  const setStatus = (s: ConnectionStatus): void => {
    status = s;
    for (const cb of statusCbs) cb(s);
  };

  const connect = (): void => {
    const sock = new WebSocket(url);
    let opened = false;
    ws = sock;
    sock.onopen = () => {
      opened = true;
      attempt = 0;
      setStatus({ state: 'open' });
      const q = queue;
      queue = [];
      for (const m of q) sock.send(m);
    };
    sock.onmessage = (ev) => {
      let msg: unknown;
      try {
        msg = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      if (!msg || typeof msg !== 'object') return;
      const m = msg as { type?: unknown; id?: unknown; result?: unknown; name?: unknown; payload?: unknown };
      if (m.type === 'response' && typeof m.id === 'number') {
        const p = pending.get(m.id);
        if (!p) return;
        pending.delete(m.id);
        const r = m.result as Result<unknown> | undefined;
        try {
          if (!r || typeof r !== 'object' || typeof r.ok !== 'boolean')
            throw new Error(`${p.name}: malformed response`);
          p.resolve(unwrap(p.name, r));
        } catch (e) {
          p.reject(e as Error);
        }
      } else if (m.type === 'event' && typeof m.name === 'string') {
        listeners.emit(m.name, m.payload);
      }
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      // Nothing sent after a close: a queued launch must not run minutes later behind the user's back.
      queue = [];
      for (const [id, p] of pending) {
        p.reject(new Error('the connection to the workbench was lost'));
        pending.delete(id);
      }
      const closed = (refused: boolean): void => {
        const code = refused ? CLOSE_REFUSED : ev.code;
        setStatus({ state: 'closed', message: closeMessage(code, ev.reason), refused });
        setTimeout(connect, backoffDelay(attempt++, refused));
      };
      // The server answers an upgrade without the token with HTTP 401, which a page sees only as close code 1006;
      // the same address over HTTP says whether that was the token.
      if (!opened && ev.code === 1006)
        void fetch(url.replace(/^ws/, 'http'), { credentials: 'same-origin', cache: 'no-store' }).then(
          (r) => closed(r.status === 401),
          () => closed(false),
        );
      else closed(ev.code === CLOSE_REFUSED);
    };
  };
  connect();

  return {
    transport: 'websocket',
    request<N extends RequestName>(name: N, payload: RequestOf<N>): Promise<ResponseOf<N>> {
      return new Promise<ResponseOf<N>>((resolve, reject) => {
        const id = nextId++;
        pending.set(id, { name, resolve: resolve as (v: unknown) => void, reject });
        const msg = JSON.stringify({ type: 'request', id, name, payload });
        if (ws && ws.readyState === WebSocket.OPEN) ws.send(msg);
        else queue.push(msg);
      });
    },
    on<N extends EventName>(name: N, handler: (payload: EventOf<N>) => void): () => void {
      const { remove } = listeners.add(name, handler as Handler);
      return () => void remove();
    },
    onStatus(cb) {
      statusCbs.add(cb);
      cb(status);
      return () => void statusCbs.delete(cb);
    },
    chooseFolder: null,
    chooseExportPath: null,
    pathForFile() {
      return null;
    },
  };
}

let instance: Bridge | null = null;

/** The app's bridge (one per page). */
export function getBridge(): Bridge {
  instance ??= window.digpt ? electronBridge(window.digpt) : socketBridge(wsUrl(location));
  return instance;
}
