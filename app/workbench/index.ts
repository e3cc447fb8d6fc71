// The workbench service behind every UI: answers API requests (validated) and emits API events, for IPC and WebSocket alike.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { parseEvent, type EventName, type EventOf, type Result } from '../api/contract.js';
import { cacheDir } from '../workspace.js';
import { checkReadPath, RUN_EXPORT_FOLDER } from '../runs/paths.js';
import { BUILTIN_TEACHER } from '../teachers/index.js';
import { DatasetRegistry } from './datasets.js';
import { handleRequest, requestHandlers, type Handlers } from './handlers.js';
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
  /**
   * The folders external runs (`runs.watch`) must lie in; default: anywhere unrestricted, nowhere restricted
   * (`digpt serve --external DIR` gives one).
   */
  readonly externalRoots?: readonly string[];
}

type Listener = (name: EventName, payload: unknown) => void;

export class Workbench {
  readonly workspace: string;
  private readonly listeners = new Set<Listener>();
  private readonly datasets: DatasetRegistry;
  private readonly runs: RunManager;
  private readonly restrict: boolean;
  private readonly uploads: Uploads;
  /** One handler per request of the contract (handlers.ts). */
  private readonly handlers: Handlers;

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
        log: (level, text) => this.emit('log', { level, text }),
      },
      {
        file: nodePath.join(this.workspace, 'external-runs.json'),
        ...(o.externalRoots !== undefined || this.restrict
          ? { roots: (o.externalRoots ?? []).map((r) => fs.realpathSync(r)) }
          : {}),
      },
    );
    this.handlers = requestHandlers({
      workspace: this.workspace,
      datasets: this.datasets,
      runs: this.runs,
      uploads: this.uploads,
    });
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

  /**
   * Follows `dir` if it is a run folder, else every run folder directly inside it (`digpt serve --external`);
   * a folder that is no run is skipped with a log line.
   */
  followExternal(dir: string): void {
    const isRun = fs.existsSync(nodePath.join(dir, 'config.json'));
    const dirs = isRun
      ? [dir]
      : fs
          .readdirSync(dir, { withFileTypes: true })
          .filter((e) => e.isDirectory() && fs.existsSync(nodePath.join(dir, e.name, 'config.json')))
          .map((e) => nodePath.join(dir, e.name));
    for (const d of dirs) {
      try {
        this.runs.watchExternal(d);
      } catch (e) {
        this.emit('log', { level: 'warn', text: `${d}: ${e instanceof Error ? e.message : String(e)}` });
      }
    }
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
  handle(name: string, payload: unknown): Promise<Result<unknown>> {
    return handleRequest(this.handlers, name, payload);
  }

  async close(): Promise<void> {
    this.uploads.close();
    await this.runs.close();
    await this.datasets.close();
    this.listeners.clear();
  }
}
