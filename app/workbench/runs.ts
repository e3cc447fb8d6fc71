// The runs of a workspace: launched through the job host, listed from disk, controlled, and reported as API events.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import type {
  BackendInfo,
  ExportFormat,
  LaunchRequest,
  MetricRecord,
  PatchOrderFrame,
  RunSummary,
} from '../api/contract.js';
import { PRETRAIN_DEFAULTS } from '../api/run-kinds.js';
import { startJob, type JobHandle } from '../jobs/host.js';
import type { JobSpec, WorkerEvent } from '../jobs/protocol.js';
import { listCheckpoints, verifyCheckpoint } from '../runs/checkpoint.js';
import { parseAnyRunConfig, readAnyRunConfig, type AnyRunConfig } from '../runs/config.js';
import { exportMetricsCsv } from '../runs/csv.js';
import { resolveExportTarget } from '../runs/paths.js';
import { clearLockOfEndedJob } from '../runs/lock.js';
import { isEventLine, lastLoggedStep, readMetrics } from '../runs/metrics.js';
import { checkReadPath } from '../runs/paths.js';
import { ExternalFollower, ExternalList, lastPatchOrder } from './external.js';
import { BUILTIN_TEACHER } from '../teachers/index.js';
import { pngDataUrls } from './datasets.js';

/** The workspace's path rules, as runs need them (Workbench.teacherPath, Workbench.exportLimits). */
export interface RunPaths {
  /** The path a job opens for a teacher file the user named; throws when it may not be read. */
  teacher(path: string): string;
  /** Folders an export of `runDir` must stay inside (when given) and those it never writes into. */
  exportLimits(runDir: string): { within?: string[]; notWithin: string[] };
}

export interface RunEvents {
  update(s: RunSummary): void;
  metrics(runId: string, records: MetricRecord[]): void;
  patchOrder(f: PatchOrderFrame): void;
  log(level: 'info' | 'warn' | 'error', text: string): void;
}

interface Live {
  summary: RunSummary;
  handle?: JobHandle;
  frame?: PatchOrderFrame;
  /** The run's checked config.json, read when its job reports the run (the patch-order view needs its model). */
  config?: AnyRunConfig;
  /** Wall time and step when the job started, for the ETA. */
  t0: number;
  step0: number;
}

function readJson(path: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(fs.readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

const KINDS: readonly RunSummary['kind'][] = ['pretrain', 'finetune', 'probe', 'knn'];

/**
 * What the list shows of a run folder on disk: its checked config.json, or, when that does not check, the run as
 * failed with the reason (naming the file and field), so a damaged run is seen rather than hidden. Undefined for a
 * folder that holds no config.json (not a run).
 */
function listed(
  dir: string,
): { config?: AnyRunConfig; kind: RunSummary['kind']; error?: string } | undefined {
  if (!fs.existsSync(nodePath.join(dir, 'config.json'))) return undefined;
  try {
    const config = readAnyRunConfig(dir);
    return { config, kind: config.kind };
  } catch (e) {
    const raw = readJson(nodePath.join(dir, 'config.json'))?.['kind'];
    const kind = KINDS.find((k) => k === raw) ?? 'pretrain';
    return { kind, error: e instanceof Error ? e.message : String(e) };
  }
}

/** A run folder's summary as the disk shows it (no job attached). */
function fromDisk(
  id: string,
  dir: string,
  l: NonNullable<ReturnType<typeof listed>>,
  external = false,
): Live {
  const { config: cfg, kind } = l;
  const total = cfg && 'steps' in cfg ? cfg.steps : 0;
  const step = lastLoggedStep(readMetrics(dir));
  const result = readJson(nodePath.join(dir, 'result.json')) as RunSummary['result'];
  return {
    summary: {
      id,
      dir,
      kind,
      title:
        (external ? 'external · ' : '') +
        (cfg && 'title' in cfg ? cfg.title : `${kind} ${cfg && 'preset' in cfg ? cfg.preset : ''}`.trim()),
      status: l.error
        ? 'failed'
        : kind === 'probe' || kind === 'knn'
          ? result
            ? 'done'
            : 'failed'
          : step >= total && total > 0
            ? 'done'
            : 'idle',
      step,
      totalSteps: total,
      etaSeconds: null,
      imgPerSec: null,
      ...(result ? { result } : {}),
      ...(l.error ? { error: l.error } : {}),
      ...(external ? { external: true } : {}),
      startedAt: fs.statSync(dir).mtime.toISOString(),
    },
    ...(l.config ? { config: l.config } : {}),
    t0: 0,
    step0: step,
  };
}

export class RunManager {
  private readonly runs = new Map<string, Live>();
  private lastBackend: BackendInfo | null = null;

  private readonly external: ExternalList | undefined;
  private readonly followers = new Map<string, ExternalFollower>();

  constructor(
    private readonly root: string,
    private readonly resolveDataset: (id: string) => string,
    private readonly paths: RunPaths,
    private readonly events: RunEvents,
    /** Where the list of external run folders persists, and the folders they must lie in (digpt serve). */
    private readonly externalOptions?: { readonly file: string; readonly roots?: readonly string[] },
  ) {
    fs.mkdirSync(root, { recursive: true });
    for (const id of fs.readdirSync(root).sort()) {
      const dir = nodePath.join(root, id);
      const l = listed(dir);
      if (l) this.runs.set(id, fromDisk(id, dir, l));
    }
    this.external = externalOptions ? new ExternalList(externalOptions.file) : undefined;
    for (const dir of this.external?.read() ?? []) {
      try {
        // a list written by the desktop app is read by digpt serve too: its roots hold here as well
        this.follow(this.externalDir(dir));
      } catch (e) {
        this.events.log(
          'warn',
          `external run ${dir} is not followed: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
    }
  }

  /** The backend the last job reported (app.info), or null before any job did. */
  get backend(): BackendInfo | null {
    return this.lastBackend;
  }

  /** Run folders (for the path checks of `digpt serve`). */
  roots(): string[] {
    return [this.root];
  }

  list(): RunSummary[] {
    return [...this.runs.values()]
      .map((r) => r.summary)
      .sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  }

  get(id: string): Live {
    const r = this.runs.get(id);
    if (!r) throw new Error(`no run with id ${id}`);
    return r;
  }

  private newId(kind: string): string {
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
    let id = `${kind}-${stamp}`;
    for (let i = 2; this.runs.has(id) || fs.existsSync(nodePath.join(this.root, id)); i++)
      id = `${kind}-${stamp}-${i}`;
    return id;
  }

  /** A run id or a teacher spec as a path the engine understands. */
  private teacherSpec(t: string): string {
    if (t === 'pixels') return 'pixels';
    if (t === 'builtin') return BUILTIN_TEACHER;
    if (this.runs.has(t)) return this.get(t).summary.dir;
    return this.paths.teacher(t);
  }

  private runDir(id: string, what: string): string {
    if (id === 'scratch') return 'scratch';
    if (!this.runs.has(id)) throw new Error(`${what}: no run with id ${id}`);
    return this.get(id).summary.dir;
  }

  /** Turns a UI launch into a job and starts it. */
  launch(req: LaunchRequest): RunSummary {
    const id = this.newId(req.kind);
    const dir = nodePath.join(this.root, id);
    const data = this.resolveDataset(req.dataset);
    let job: JobSpec;
    let title: string;
    // the settings keep config.json's names from the launch to the job, which applies the defaults (run-kinds.ts)
    switch (req.kind) {
      case 'pretrain': {
        const { kind, dataset: _dataset, teacher, ...settings } = req;
        job = { kind, data, ...settings, teacher: this.teacherSpec(teacher), out: dir };
        const objective = req.objective ?? PRETRAIN_DEFAULTS.objective;
        title = `${objective} · ${req.preset} · teacher ${req.teacher}`;
        break;
      }
      case 'finetune': {
        const { kind, dataset: _dataset, from, ...settings } = req;
        job = { kind, data, ...settings, from: this.runDir(from, 'fine-tune from'), out: dir };
        title = `finetune from ${req.from}`;
        break;
      }
      default: {
        const { dataset: _dataset, from, ...settings } = req;
        job = { ...settings, data, source: this.runDir(from, req.kind) };
        title = `${req.kind} of ${from}`;
        const file = nodePath.join(dir, 'config.json');
        // written as it will be read back (listing, runs.config): checked first
        const config = parseAnyRunConfig({ ...job, title }, file);
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(file, JSON.stringify(config, null, 2));
      }
    }
    const live: Live = {
      summary: {
        id,
        dir,
        kind: req.kind,
        title,
        status: 'running',
        step: 0,
        totalSteps: 0,
        etaSeconds: null,
        imgPerSec: null,
        startedAt: new Date().toISOString(),
      },
      t0: Date.now(),
      step0: 0,
    };
    this.runs.set(id, live);
    this.start(live, job);
    return live.summary;
  }

  private update(live: Live, patch: Partial<RunSummary>): void {
    live.summary = { ...live.summary, ...patch };
    this.events.update(live.summary);
  }

  private start(live: Live, job: JobSpec): void {
    const handle = startJob(job);
    live.handle = handle;
    live.t0 = Date.now();
    live.step0 = live.summary.step;
    handle.on('event', (e) => void this.onEvent(live, e));
    handle.on('exit', ({ ok, error }) => {
      live.handle = undefined;
      // a job ended without its clean-up (killed, out of memory) leaves its lock: it is gone, so is its hold
      clearLockOfEndedJob(live.summary.dir, handle.pid ?? process.pid);
      // a crashed worker fails its run (one refused because another process writes it has not); the workbench goes on
      if (!ok && live.summary.status !== 'failed' && live.summary.status !== 'idle')
        this.update(live, { status: 'failed', error: error ?? 'the engine worker failed' });
      else if (live.summary.status === 'running' || live.summary.status === 'stopping')
        this.update(live, { status: 'stopped' });
    });
  }

  private async onEvent(live: Live, e: WorkerEvent): Promise<void> {
    const s = live.summary;
    switch (e.type) {
      case 'run':
        this.update(live, {
          totalSteps: e.totalSteps,
          step: e.startStep,
          status: s.status === 'paused' ? 'paused' : 'running',
        });
        live.t0 = Date.now();
        live.step0 = e.startStep;
        live.config = listed(s.dir)?.config;
        break;
      case 'step': {
        const rec = { ...e.record } as unknown as MetricRecord;
        const done = e.record.step - live.step0;
        const elapsed = (Date.now() - live.t0) / 1000;
        const eta = done > 0 ? (elapsed / done) * (s.totalSteps - e.record.step) : null;
        this.events.metrics(s.id, [rec]);
        this.update(live, { step: e.record.step, imgPerSec: e.record.img_per_s, etaSeconds: eta });
        if (e.order && e.clusterError && e.samples && s.kind === 'pretrain') {
          const cfg = live.config?.kind === 'pretrain' ? live.config : undefined;
          const cps = cfg?.model.clusters_per_side ?? 2;
          const k = cps * cps;
          const n = e.samples.count;
          // kd/mae have no cluster order to draw
          if (
            e.order.length >= n * k &&
            e.clusterError.length >= n * (k - 1) &&
            (cfg?.['objective'] === 'digpt' ||
              cfg?.['objective'] === 'gen-only' ||
              cfg?.['objective'] === 'dis-only')
          ) {
            const frame: PatchOrderFrame = {
              runId: s.id,
              step: e.record.step,
              clustersPerSide: cps,
              k,
              order: Array.from({ length: n }, (_, i) =>
                Array.from(e.order?.subarray(i * k, (i + 1) * k) ?? []),
              ),
              clusterError: Array.from({ length: n }, (_, i) =>
                Array.from(e.clusterError?.subarray(i * (k - 1), (i + 1) * (k - 1)) ?? []),
              ),
              images: await pngDataUrls(e.samples.pixels, n, e.samples.size),
            };
            live.frame = frame;
            this.events.patchOrder(frame);
          }
        }
        break;
      }
      case 'eval':
        this.events.metrics(s.id, [e.record as MetricRecord]);
        this.update(live, { result: { ...e.record } });
        break;
      case 'result':
        if (s.kind === 'probe' || s.kind === 'knn')
          fs.writeFileSync(nodePath.join(s.dir, 'result.json'), JSON.stringify(e.result, null, 2));
        this.update(live, { result: { ...e.result } });
        break;
      case 'paused':
        this.update(live, { status: 'paused' });
        break;
      case 'continued':
        this.update(live, { status: 'running' });
        break;
      case 'done':
        this.update(live, { status: e.stopped ? 'stopped' : 'done', step: e.step || s.step, etaSeconds: 0 });
        break;
      case 'error':
        // RunLockedError: another process (a CLI resume, another serve) is writing the run; it has not failed
        this.update(live, { status: e.name === 'RunLockedError' ? 'idle' : 'failed', error: e.message });
        this.events.log('error', `run ${s.id}: ${e.message}`);
        break;
      case 'log':
        this.events.log(e.level, `run ${s.id}: ${e.text}`);
        break;
      case 'backend':
        this.lastBackend = e.backend;
        this.events.log('info', `run ${s.id}: ${e.backend.text}`);
        break;
      default:
        break;
    }
  }

  control(id: string, action: 'pause' | 'continue' | 'stop' | 'resume'): RunSummary {
    const live = this.get(id);
    const s = live.summary;
    if (action === 'resume') {
      if (live.handle) throw new Error(`run ${id} is already running`);
      if (s.kind === 'probe' || s.kind === 'knn')
        throw new Error(`a ${s.kind} cannot be resumed; launch it again`);
      this.update(live, { status: 'running', error: undefined });
      this.start(live, { kind: 'resume', run: s.dir });
      return live.summary;
    }
    if (!live.handle) throw new Error(`run ${id} is not running`);
    if (action === 'pause') live.handle.pause();
    else if (action === 'continue') live.handle.continue();
    else {
      live.handle.stop();
      this.update(live, { status: 'stopping' });
    }
    return live.summary;
  }

  metrics(id: string): MetricRecord[] {
    // the one reader of metrics.jsonl (a line cut by a crash is left out)
    return readMetrics(this.get(id).summary.dir).filter((r) => !isEventLine(r)) as MetricRecord[];
  }

  config(id: string): Record<string, unknown> {
    return readAnyRunConfig(this.get(id).summary.dir) as unknown as Record<string, unknown>;
  }

  async patchOrder(id: string): Promise<PatchOrderFrame | null> {
    const live = this.get(id);
    if (live.frame || !live.summary.external) return live.frame ?? null;
    return this.externalFrame(live);
  }

  private async externalFrame(live: Live): Promise<PatchOrderFrame | null> {
    const cfg = live.config?.kind === 'pretrain' ? live.config : undefined;
    if (!cfg) return null;
    return lastPatchOrder(live.summary.dir, live.summary.id, cfg.model.clusters_per_side, pngDataUrls);
  }

  /**
   * Follows a run folder trained elsewhere (a synced or mounted copy of a digpt_torch run): listed, marked external,
   * its curves and patch orders live; probe, k-NN, fine-tune, export and resume work on it as on any run. Kept in the
   * workspace's list, so it is followed again next time. Restricted (digpt serve): only inside the given roots.
   */
  watchExternal(path: string): RunSummary {
    const dir = this.externalDir(path);
    const known = [...this.runs.values()].find((r) => r.summary.dir === dir);
    if (known) return known.summary;
    const live = this.follow(dir);
    this.external?.write([...(this.external?.read() ?? []), dir]);
    return live.summary;
  }

  /** An external run folder's real path, checked against the roots when there are some (digpt serve). */
  private externalDir(path: string): string {
    const roots = this.externalOptions?.roots;
    if (!roots) return fs.realpathSync(path);
    try {
      return checkReadPath(path, [...roots], 'external run folder');
    } catch {
      throw new Error(
        `external run folder ${nodePath.resolve(path)} is outside the folders this server follows ` +
          `(${roots.length ? roots.join(', ') : 'none: start digpt serve with --external DIR'})`,
      );
    }
  }

  /** Stops following an external run (its folder is left as it is). */
  async unwatchExternal(id: string): Promise<void> {
    const live = this.get(id);
    if (!live.summary.external) throw new Error(`run ${id} is not an external run`);
    if (live.handle) throw new Error(`run ${id} is running here; stop it first`);
    await this.followers.get(id)?.close();
    this.followers.delete(id);
    this.runs.delete(id);
    this.external?.write((this.external?.read() ?? []).filter((d) => d !== live.summary.dir));
  }

  private follow(dir: string): Live {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir} is not a folder`);
    const l = listed(dir);
    if (!l) throw new Error(`${dir}: no config.json; not a run folder`);
    if (l.error) throw new Error(l.error);
    if (l.kind !== 'pretrain' && l.kind !== 'finetune')
      throw new Error(`${dir} is a ${l.kind} result, not a training run`);
    const base = nodePath.basename(dir).replace(/[^A-Za-z0-9._-]/g, '_');
    let id = `external-${base}`;
    for (let i = 2; this.runs.has(id); i++) id = `external-${base}-${i}`;
    const live = fromDisk(id, dir, l, true);
    this.runs.set(id, live);
    const refresh = () => {
      const d = fromDisk(id, dir, listed(dir) ?? l, true);
      this.update(live, {
        step: d.summary.step,
        status: live.handle ? live.summary.status : d.summary.status,
      });
    };
    const follower = new ExternalFollower(
      dir,
      {
        metrics: (records) => {
          this.events.metrics(id, records);
          refresh();
          const speed = records.findLast((r) => typeof r['img_per_s'] === 'number')?.['img_per_s'];
          if (typeof speed === 'number') this.update(live, { imgPerSec: speed });
        },
        patchOrder: () =>
          void this.externalFrame(live).then((f) => {
            if (f) this.events.patchOrder(f);
          }),
        checkpoints: refresh,
      },
      () => live.handle !== undefined,
    );
    this.followers.set(id, follower);
    return live;
  }

  checkpoints(id: string): { step: number; folder: string; created: string }[] {
    const out: { step: number; folder: string; created: string }[] = [];
    for (const folder of listCheckpoints(nodePath.join(this.get(id).summary.dir, 'checkpoints'))) {
      const v = verifyCheckpoint(folder, { modelOnly: true });
      if (v.ok) out.push({ step: v.manifest.step, folder, created: v.manifest.created });
    }
    return out;
  }

  /** Exports a checkpoint in a worker (the engine lives there), metrics as csv here; resolves with what was written. */
  async export(
    id: string,
    format: ExportFormat,
    out?: string,
    overwrite = false,
  ): Promise<{ path: string; tensors: number; step: number; rows?: number }> {
    const dir = this.get(id).summary.dir;
    if (format === 'csv') {
      const r = exportMetricsCsv(dir, out, { overwrite, ...this.paths.exportLimits(dir) });
      return { path: r.path, tensors: 0, step: r.step, rows: r.rows };
    }
    const job = {
      kind: 'export' as const,
      run: dir,
      format,
      ...(out !== undefined ? { out } : {}),
      ...(overwrite ? { overwrite } : {}),
      ...this.paths.exportLimits(dir),
    };
    // refused here at once, with no worker started; the job checks again where it writes
    resolveExportTarget(dir, format, out, job);
    const handle = startJob(job);
    let result: Record<string, number | string> | undefined;
    let error: string | undefined;
    handle.on('event', (e) => {
      if (e.type === 'result') result = { ...e.result };
      if (e.type === 'error') error = e.message;
    });
    const r = await handle.done();
    if (error ?? !r.ok) throw new Error(error ?? r.error ?? 'export failed');
    if (!result) throw new Error('export finished without a result');
    return { path: String(result['path']), tensors: Number(result['tensors']), step: Number(result['step']) };
  }

  /** Stops running jobs at their next step boundary, each writing a checkpoint; kills any not gone after `graceMs`. */
  async close(graceMs = 60_000): Promise<void> {
    await Promise.all([...this.followers.values()].map((f) => f.close()));
    this.followers.clear();
    await Promise.all(
      [...this.runs.values()].map(async ({ handle }) => {
        if (!handle) return;
        handle.stop();
        const timer = setTimeout(() => void handle.kill(), graceMs);
        await handle.done();
        clearTimeout(timer);
      }),
    );
  }
}
