// One run's live data: metric columns (updated from run.metrics events, redrawn once per frame), the patch-order
// frame, checkpoints and config. Open it when a run is shown; dispose() when it is not.
import type { PatchOrderFrame } from '../../../../app/api/contract.js';
import type { Bridge } from '../../lib/bridge.js';
import { MetricColumns, type MetricRecordLike } from '../metrics/series.js';

interface CheckpointInfo {
  step: number;
  folder: string;
  created: string;
}

export class RunSession {
  readonly id: string;
  /** Not reactive (100,000 points): read it after reading `version`. */
  readonly columns = new MetricColumns();
  /** Bumped (at most once per animation frame) when columns change. */
  version = $state(0);
  metricsError = $state<string | null>(null);
  patchOrder = $state.raw<PatchOrderFrame | null>(null);
  /** When false the patch-order view keeps its frame (so it can be stepped through while training goes on). */
  followPatchOrder = $state(true);
  checkpoints = $state.raw<CheckpointInfo[]>([]);
  checkpointsError = $state<string | null>(null);
  config = $state.raw<Record<string, unknown> | null>(null);
  #bridge: Bridge;
  #offs: (() => void)[] = [];
  #pending: MetricRecordLike[] = [];
  #raf = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #loaded = false;

  constructor(bridge: Bridge, id: string, opts: { patchOrder?: boolean } = {}) {
    this.#bridge = bridge;
    this.id = id;
    this.#offs.push(
      bridge.on('run.metrics', ({ runId, records }) => {
        if (runId !== this.id) return;
        this.#pending.push(...records);
        if (this.#loaded) this.#schedule();
      }),
    );
    if (opts.patchOrder !== false)
      this.#offs.push(
        bridge.on('run.patchOrder', (f) => {
          if (f.runId === this.id && (this.followPatchOrder || !this.patchOrder)) this.patchOrder = f;
        }),
      );
    // Events sent while the socket was down are lost: after a reconnection, read the whole file again (a repeated
    // step replaces the columns from there on, so this is a full replacement).
    let wasClosed = false;
    this.#offs.push(
      bridge.onStatus((st) => {
        if (st.state === 'closed') wasClosed = true;
        else if (st.state === 'open' && wasClosed) {
          wasClosed = false;
          void this.loadMetrics();
          if (opts.patchOrder !== false) void this.loadPatchOrder(true);
        }
      }),
    );
    void this.loadMetrics();
    if (opts.patchOrder !== false) void this.loadPatchOrder();
  }

  /** The whole metrics.jsonl, then the records that arrived meanwhile (a repeated step replaces, see MetricColumns). */
  async loadMetrics(): Promise<void> {
    try {
      const all = await this.#bridge.request('runs.metrics', { id: this.id });
      this.columns.append(all);
      this.metricsError = null;
    } catch (e) {
      this.metricsError = (e as Error).message;
    }
    this.#loaded = true;
    this.#flush();
  }

  async loadPatchOrder(replace = false): Promise<void> {
    try {
      const f = await this.#bridge.request('runs.patchOrder', { id: this.id });
      if (f && (!this.patchOrder || (replace && this.followPatchOrder))) this.patchOrder = f;
    } catch {
      // no frame yet: the view says so
    }
  }

  async loadCheckpoints(): Promise<void> {
    try {
      this.checkpoints = [...(await this.#bridge.request('runs.checkpoints', { id: this.id }))].sort(
        (a, b) => b.step - a.step,
      );
      this.checkpointsError = null;
    } catch (e) {
      this.checkpointsError = (e as Error).message;
    }
  }

  async loadConfig(): Promise<Record<string, unknown> | null> {
    if (this.config) return this.config;
    try {
      this.config = await this.#bridge.request('runs.config', { id: this.id });
    } catch {
      this.config = null;
    }
    return this.config;
  }

  /** Writes an export; returns the written path (the error message is thrown). `overwrite` replaces a file at `out`. */
  async export(
    format: 'timm' | 'digpt' | 'tfjs',
    out?: string,
    overwrite = false,
  ): Promise<{ path: string; tensors: number; step: number }> {
    return this.#bridge.request('runs.export', {
      id: this.id,
      format,
      ...(out ? { out } : {}),
      ...(overwrite ? { overwrite } : {}),
    });
  }

  /** The native save dialog's path for an export (Electron), or null (no dialog, or cancelled). */
  async chooseExportPath(defaultName: string): Promise<string | null> {
    return (await this.#bridge.chooseExportPath?.(defaultName)) ?? null;
  }

  get canChooseExportPath(): boolean {
    return this.#bridge.chooseExportPath !== null;
  }

  // Redraw on the next frame; the timer covers windows where frames are throttled, keeping updates within 250 ms.
  #schedule(): void {
    if (this.#raf || this.#timer) return;
    this.#raf = requestAnimationFrame(() => this.#flush());
    this.#timer = setTimeout(() => this.#flush(), 200);
  }

  #flush(): void {
    if (this.#raf) cancelAnimationFrame(this.#raf);
    if (this.#timer) clearTimeout(this.#timer);
    this.#raf = 0;
    this.#timer = undefined;
    if (this.#pending.length > 0) {
      this.columns.append(this.#pending);
      this.#pending = [];
    }
    this.version++;
  }

  dispose(): void {
    for (const off of this.#offs) off();
    this.#offs = [];
    if (this.#raf) cancelAnimationFrame(this.#raf);
    if (this.#timer) clearTimeout(this.#timer);
  }
}
