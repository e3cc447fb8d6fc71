// The object the preload exposes to the page as `window.digpt`, built from an ipcRenderer-like port so that it is
// testable without Electron. Only plain values cross: the page never sees ipcRenderer or an IPC event.
import type { EventName, RequestName, Result } from '../app/api/contract.js';
import { Channels } from './channels.js';
import type { EventMessage } from './ipc.js';

/** `window.digpt`, the renderer's only way out of its sandbox. */
export interface DigptBridge {
  /** One workbench request; resolves to its Result (never rejects). */
  request(name: RequestName, payload: unknown): Promise<Result<unknown>>;
  /** Calls `callback(payload)` for each event `name`; returns the unsubscribe function. */
  on(name: EventName, callback: (payload: unknown) => void): () => void;
  /** The absolute path of a File dropped on the window or picked in an <input type=file>. */
  pathForFile(file: File): string;
  /** The native folder dialog: the chosen folder, or null when cancelled. */
  chooseFolder(): Promise<string | null>;
  /** The native save dialog for an export, starting from `defaultName`: the chosen path, or null when cancelled. */
  chooseExportPath(defaultName: string): Promise<string | null>;
}

/** The part of Electron's ipcRenderer the bridge uses. */
export interface IpcRendererPort {
  invoke(channel: string, ...args: unknown[]): Promise<unknown>;
  on(channel: string, listener: (event: unknown, ...args: unknown[]) => void): unknown;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** A Result as main sent it, or a failure if it is not one (main's handler always answers a Result). */
function asResult(value: unknown): Result<unknown> {
  if (typeof value === 'object' && value !== null && 'ok' in value) {
    if (value.ok === true && 'value' in value) return { ok: true, value: value.value };
    if (value.ok === false && 'error' in value && typeof value.error === 'string')
      return { ok: false, error: value.error };
  }
  return { ok: false, error: 'malformed reply from the main process' };
}

async function invoke(ipc: IpcRendererPort, channel: string, ...args: unknown[]): Promise<Result<unknown>> {
  try {
    return asResult(await ipc.invoke(channel, ...args));
  } catch (e) {
    return { ok: false, error: message(e) };
  }
}

/** A dialog's path: the value of an ok Result; a refused one rejects (it means the page is not the app's). */
async function dialogPath(result: Promise<Result<unknown>>): Promise<string | null> {
  const r = await result;
  if (!r.ok) throw new Error(r.error);
  return typeof r.value === 'string' ? r.value : null;
}

export function buildDigptApi(ipc: IpcRendererPort, pathForFile: (file: File) => string): DigptBridge {
  // One ipcRenderer listener dispatches to every subscription (no listener per subscription, no leak warnings).
  const subscribers = new Map<string, Set<(payload: unknown) => void>>();
  ipc.on(Channels.event, (_event, raw) => {
    const msg = raw as Partial<EventMessage> | undefined;
    if (typeof msg?.name !== 'string') return;
    for (const callback of [...(subscribers.get(msg.name) ?? [])]) {
      try {
        callback(msg.payload);
      } catch (e) {
        console.error(`digpt: a listener of ${msg.name} threw`, e);
      }
    }
  });

  return {
    request: (name, payload) => invoke(ipc, Channels.request, name, payload),
    on(name, callback) {
      if (typeof callback !== 'function') throw new TypeError('digpt.on: callback must be a function');
      let set = subscribers.get(name);
      if (!set) subscribers.set(name, (set = new Set()));
      // A wrapper, so subscribing the same function twice gives two independent subscriptions.
      const entry = (payload: unknown) => callback(payload);
      set.add(entry);
      return () => {
        set.delete(entry);
      };
    },
    pathForFile: (file) => pathForFile(file),
    chooseFolder: () => dialogPath(invoke(ipc, Channels.openFolder)),
    chooseExportPath: (defaultName) => dialogPath(invoke(ipc, Channels.saveExport, defaultName)),
  };
}
