// The Workbench's request table: one handler per request of the API contract, typed by it, and the one place a request is parsed, answered and its answer checked.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { PRESETS } from '../../engine/config.js';
import {
  isRequestName,
  parseRequest,
  parseResponse,
  UPLOAD_CHUNK_BYTES,
  type RequestName,
  type RequestOf,
  type ResponseOf,
  type Result,
} from '../api/contract.js';
import type { DatasetRegistry } from './datasets.js';
import type { RunManager } from './runs.js';
import type { Uploads } from './uploads.js';

/** Answers one request whose payload has been parsed; its answer is checked against the contract after it. */
export type Handler<N extends RequestName> = (
  payload: RequestOf<N>,
) => ResponseOf<N> | Promise<ResponseOf<N>>;

/** A handler for every request name: a missing one, or one answering the wrong shape, fails tsc. */
export type Handlers = { readonly [N in RequestName]: Handler<N> };

/** What the handlers answer from: the Workbench's parts. */
export interface WorkbenchParts {
  readonly workspace: string;
  readonly datasets: DatasetRegistry;
  readonly runs: RunManager;
  readonly uploads: Uploads;
}

/** The install's package.json version (read per request: app.info is rare and the file may be replaced). */
function version(): string {
  const pkg = JSON.parse(
    fs.readFileSync(nodePath.join(import.meta.dirname, '..', '..', 'package.json'), 'utf8'),
  ) as { version: string };
  return pkg.version;
}

export function requestHandlers(p: WorkbenchParts): Handlers {
  return {
    'app.info': () => ({ version: version(), backend: p.runs.backend, workspace: p.workspace }),
    'presets.list': () => PRESETS.map((s) => ({ name: s.name, summary: s.summary, model: { ...s.model } })),
    'datasets.list': () => p.datasets.list(),
    'datasets.add': (r) => p.datasets.add(r.path),
    'datasets.remove': (r) => {
      p.datasets.remove(r.id);
      return {};
    },
    'datasets.thumbnails': (r) => p.datasets.thumbnails(r.id, r.split, r.offset, r.limit),
    'datasets.uploadBegin': (r) => ({ uploadId: p.uploads.begin(r.name, r), chunkBytes: UPLOAD_CHUNK_BYTES }),
    'datasets.uploadFile': (r) => p.uploads.file(r.uploadId, r.path, r.size, r.offset, r.data),
    'datasets.uploadEnd': async (r) => p.datasets.add(await p.uploads.end(r.uploadId)),
    'datasets.uploadAbort': async (r) => {
      await p.uploads.abort(r.uploadId);
      return {};
    },
    'runs.list': () => p.runs.list(),
    'runs.launch': (r) => p.runs.launch(r),
    'runs.control': (r) => p.runs.control(r.id, r.action),
    'runs.metrics': (r) => p.runs.metrics(r.id),
    'runs.config': (r) => p.runs.config(r.id),
    'runs.patchOrder': (r) => p.runs.patchOrder(r.id),
    'runs.checkpoints': (r) => p.runs.checkpoints(r.id),
    'runs.export': (r) => p.runs.export(r.id, r.format, r.out, r.overwrite === true),
    'runs.watch': (r) => p.runs.watchExternal(r.path),
    'runs.unwatch': async (r) => {
      await p.runs.unwatchExternal(r.id);
      return {};
    },
  };
}

/** Parses the payload, runs the request's handler and checks its answer (a bad answer is our bug, not the UI's). */
async function answer<N extends RequestName>(
  handlers: Handlers,
  name: N,
  payload: unknown,
): Promise<ResponseOf<N>> {
  const handler: Handler<N> = handlers[name];
  return parseResponse(name, await handler(parseRequest(name, payload)));
}

/** Answers one request; never throws: bad names, bad payloads and failures come back as { ok: false, error }. */
export async function handleRequest(
  handlers: Handlers,
  name: string,
  payload: unknown,
): Promise<Result<unknown>> {
  try {
    if (!isRequestName(name)) throw new Error(`unknown request '${name}'`);
    return { ok: true, value: await answer(handlers, name, payload) };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}
