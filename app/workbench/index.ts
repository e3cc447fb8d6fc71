// The workbench service behind every UI: answers API requests (validated) and emits API events, for IPC and WebSocket alike.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { PRESETS } from '../../engine/config.js';
import {
  isRequestName,
  parseEvent,
  parseRequest,
  parseResponse,
  type EventName,
  type EventOf,
  type RequestName,
  type Result,
} from '../api/contract.js';
import { cacheDir } from '../jobs/run-job.js';
import { DatasetRegistry } from './datasets.js';
import { RunManager } from './runs.js';
import { Uploads } from './uploads.js';

export interface WorkbenchOptions {
  /** Folder holding runs/ and datasets.json. */
  readonly workspace: string;
  /** The folder of run folders (default WORKSPACE/runs); `digpt serve --logdir DIR` shows any such folder. */
  readonly runsDir?: string;
  /**
   * Refuse file paths outside registered dataset folders and the runs folder (teacher files, export targets):
   * true for `digpt serve`; the desktop app passes paths the user picked in native dialogs.
   */
  readonly restrictPaths?: boolean;
  /** Watch dataset folders for changes (default true). */
  readonly watch?: boolean;
}

type Listener = (name: EventName, payload: unknown) => void;

function within(path: string, root: string): boolean {
  const rel = nodePath.relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !nodePath.isAbsolute(rel));
}

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
      (p, what) => this.checkPath(p, what),
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

  /** Refuses a path outside the registered datasets and the runs folder (when restricted). */
  checkPath(path: string, what: string): void {
    if (!this.restrict) return;
    const abs = nodePath.resolve(path);
    const roots = [...this.datasets.roots(), ...this.runs.roots()];
    if (!roots.some((r) => within(abs, r)))
      throw new Error(`${what} ${abs} is outside the registered dataset and run folders`);
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
      case 'datasets.uploadBegin':
        return { uploadId: this.uploads.begin(parseRequest(name, raw).name) };
      case 'datasets.uploadFile': {
        const r = parseRequest(name, raw);
        this.uploads.file(r.uploadId, r.path, r.data);
        return {};
      }
      case 'datasets.uploadEnd':
        return this.datasets.add(this.uploads.end(parseRequest(name, raw).uploadId));
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
        return this.runs.export(r.id, r.format, r.out);
      }
    }
  }

  async close(): Promise<void> {
    await this.runs.close();
    await this.datasets.close();
    this.listeners.clear();
  }
}
