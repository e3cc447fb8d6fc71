// What main, the engine page and the engine worker agree on (main/engine-window.ts): names, and the messages of the
// engine window's own that travel on the job's port beside the job protocol (app/jobs/protocol.ts). No imports: the
// worker's bundle (dist/main/engine-worker.js) takes this file as it is.

/** The engine window's session: its own, so the engine page shares no storage and no protocol handler with the UI. */
export const ENGINE_PARTITION = 'digpt-engine';
/** The engine page's host under the app:// scheme, served in that session only. */
export const ENGINE_HOST = 'engine';
export const ENGINE_URL = `app://${ENGINE_HOST}/index.html`;
/** The channel of the one webContents.postMessage that carries the port, and the data the page and worker check. */
export const ENGINE_PORT_CHANNEL = 'digpt:engine-port';
/** The page puts a worker's failure (a script that does not load) in its title: it has no other way to main. */
export const ENGINE_ERROR_TITLE = 'digpt-engine-error: ';

/** Messages of the engine window's own, beside the job protocol's (those have `type` and `seq`). */
export type EngineControl =
  | { digptEngine: 'init'; entry: string; env: Record<string, string> }
  | { digptEngine: 'ready' }
  | { digptEngine: 'exit'; code: number }
  | { digptEngine: 'crash'; name: string; message: string };

export function isEngineControl(m: unknown): m is EngineControl {
  return (
    typeof m === 'object' && m !== null && typeof (m as { digptEngine?: unknown }).digptEngine === 'string'
  );
}
