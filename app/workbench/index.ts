// The workbench service behind every UI: answers API requests (validated) and emits API events, for IPC and WebSocket alike.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { PRESETS } from '../../engine/config.js';
import {
  isRequestName,
  parseEvent,
  parseRequest,
  parseResponse,
  UPLOAD_CHUNK_BYTES,
  type EventName,
  type EventOf,
  type RequestName,
  type Result,
} from '../api/contract.js';
import { cacheDir } from '../workspace.js';
import { checkReadPath, RUN_EXPORT_FOLDER } from '../runs/paths.js';
import { BUILTIN_TEACHER } from '../teachers/index.js';
import { DatasetRegistry } from './datasets.js';
import { RunManager } from './runs.js';
import { Uploads } from './uploads.js';

export interface WorkbenchOptions {
  /** Folder holding runs/ and datasets.json. */
  readonly workspace: string;
  /** The folder of run folders (default WORKSPACE/runs); `digpt serve --logdir DIR` shows any such folder. */
  readonly runsDir?: string;
  /**
   * Read teacher files only from registered dataset folders, the runs folder and the built-in teacher, and write
   * exports only into a run's export/ folder or the workspace's exports/ (real paths, links resolved): true for
   * `digpt serve`; the desktop app passes paths the user picked in native dialogs. Either way an export never
   * writes into a dataset folder, the install, a run's own files or over a file unless asked (app/runs/paths.ts).
   */
  readonly restrictPaths?: boolean;
  /** Watch dataset folders for changes (default true). */
  readonly watch?: boolean;
}

type Listener = (name: EventName, payload: unknown) => void;

export class Workbench {
  readonly workspace: string;
  private readonly listeners = new Set<Listener>();
  private readonly datasets: DatasetRegistry;
  private readonly runs: RunManager;
  private readonly restrict: boolean;
  private backend: string | null = null;
  private readonly uploads: Uploads;

  constructor(o: WorkbenchOptions) {
    this.workspace = nodePath.resolve(o.workspace);
    this.restrict = o.restrictPaths ?? false;
    fs.mkdirSync(this.workspace, { recursive: true });
    this.uploads = new Uploads(nodePath.join(this.workspace, 'uploads'));
    this.datasets = new DatasetRegistry(
      this.workspace,
      nodePath.join(cacheDir(), 'images'),
      ({ entry, removed }) => {
        if (entry) this.emit('dataset.update', entry);
        if (removed) this.emit('dataset.removed', { id: removed });
      },
    );
    if (o.watch ?? true) this.datasets.watchAll();
    this.runs = new RunManager(
      nodePath.resolve(o.runsDir ?? nodePath.join(this.workspace, 'runs')),
      (id) => this.datasets.get(id).path,
      { teacher: (p) => this.teacherPath(p), exportLimits: (runDir) => this.exportLimits(runDir) },
      {
        update: (s) => this.emit('run.update', s),
        metrics: (runId, records) => this.emit('run.metrics', { runId, records }),
        patchOrder: (f) => this.emit('run.patchOrder', f),
        log: (level, text) => {
          const m = /^run \S+: (backend: .*)$/.exec(text);
          if (m) this.backend = m[1] ?? null;
          this.emit('log', { level, text });
        },
      },
    );
  }

  /**
   * A teacher file's path as its job opens it. Restricted: its real path (links resolved) must lie in a registered
   * dataset folder or the runs folder, or be the built-in teacher; the job then opens that real path.
   */
  teacherPath(path: string): string {
    if (!this.restrict) return path;
    return checkReadPath(
      path,
      [...this.datasets.roots(), ...this.runs.roots(), BUILTIN_TEACHER],
      'teacher file',
    );
  }

  /**
   * Where an export of `runDir` may go, on top of the rule every export follows (app/runs/paths.ts): never into a
   * registered dataset folder; restricted, only into the run's own export/ folder or the workspace's exports/.
   */
  exportLimits(runDir: string): { within?: string[]; notWithin: string[] } {
    const notWithin = this.datasets.roots();
    if (!this.restrict) return { notWithin };
    const within = [nodePath.join(runDir, RUN_EXPORT_FOLDER), nodePath.join(this.workspace, 'exports')];
    return { within, notWithin };
  }

  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit<N extends EventName>(name: N, payload: EventOf<N>): void {
    const checked = parseEvent(name, payload);
    for (const l of this.listeners) l(name, checked);
  }

  /** Answers one request; never throws: bad names, bad payloads and failures come back as { ok: false, error }. */
  async handle(name: string, payload: unknown): Promise<Result<unknown>> {
    try {
      if (!isRequestName(name)) throw new Error(`unknown request '${name}'`);
      const value = await this.dispatch(name, payload);
      return { ok: true, value: parseResponse(name, value) };
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
  }

  private async dispatch(name: RequestName, raw: unknown): Promise<unknown> {
    switch (name) {
      case 'app.info': {
        parseRequest(name, raw);
        const pkg = JSON.parse(
          fs.readFileSync(nodePath.join(import.meta.dirname, '..', '..', 'package.json'), 'utf8'),
        ) as { version: string };
        return { version: pkg.version, backend: this.backend, workspace: this.workspace };
      }
      case 'presets.list':
        parseRequest(name, raw);
        return PRESETS.map((p) => ({ name: p.name, summary: p.summary, model: { ...p.model } }));
      case 'datasets.list':
        parseRequest(name, raw);
        return this.datasets.list();
      case 'datasets.add':
        return this.datasets.add(parseRequest(name, raw).path);
      case 'datasets.remove':
        this.datasets.remove(parseRequest(name, raw).id);
        return {};
      case 'datasets.thumbnails': {
        const r = parseRequest(name, raw);
        return this.datasets.thumbnails(r.id, r.split, r.offset, r.limit);
      }
      case 'datasets.uploadBegin': {
        const r = parseRequest(name, raw);
        return { uploadId: this.uploads.begin(r.name, r), chunkBytes: UPLOAD_CHUNK_BYTES };
      }
      case 'datasets.uploadFile': {
        const r = parseRequest(name, raw);
        return this.uploads.file(r.uploadId, r.path, r.size, r.offset, r.data);
      }
      case 'datasets.uploadEnd':
        return this.datasets.add(await this.uploads.end(parseRequest(name, raw).uploadId));
      case 'datasets.uploadAbort':
        await this.uploads.abort(parseRequest(name, raw).uploadId);
        return {};
      case 'runs.list':
        parseRequest(name, raw);
        return this.runs.list();
      case 'runs.launch':
        return this.runs.launch(parseRequest(name, raw));
      case 'runs.control': {
        const r = parseRequest(name, raw);
        return this.runs.control(r.id, r.action);
      }
      case 'runs.metrics':
        return this.runs.metrics(parseRequest(name, raw).id);
      case 'runs.config':
        return this.runs.config(parseRequest(name, raw).id);
      case 'runs.patchOrder':
        return this.runs.patchOrder(parseRequest(name, raw).id);
      case 'runs.checkpoints':
        return this.runs.checkpoints(parseRequest(name, raw).id);
      case 'runs.export': {
        const r = parseRequest(name, raw);
        return this.runs.export(r.id, r.format, r.out, r.overwrite === true);
      }
    }
  }

  async close(): Promise<void> {
    this.uploads.close();
    await this.runs.close();
    await this.datasets.close();
    this.listeners.clear();
  }
}
