// External run folders: a run trained elsewhere (digpt_torch on a cluster, scaleout/) reaching this machine as a synced
// or mounted copy. Its metrics.jsonl, patch-order.jsonl and checkpoints are followed with chokidar; what is new is
// reported as the workbench's own runs' events are. The list of followed folders persists in the workspace.
import { watch, type FSWatcher } from 'chokidar';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import type { MetricRecord, PatchOrderFrame } from '../api/contract.js';
import { replaceFile } from '../runs/disk.js';
import { isEventLine, metricsPath, parseMetrics } from '../runs/metrics.js';

/** The file the trainer writes beside metrics.jsonl: one line per step, the orders and errors the app draws. */
export const PATCH_ORDER_FILE = 'patch-order.jsonl';

/** What one line of patch-order.jsonl holds (INTERFACE: scaleout/README.md). */
interface PatchOrderLine {
  step: number;
  order: number[][];
  cluster_error: number[][];
  /** The student's view of the samples: uint8 HWC RGB, `count` images of `size` px, base64. */
  samples?: { count: number; size: number; pixels_b64: string };
}

/**
 * The last complete line of patch-order.jsonl as a frame, or null. digpt_torch writes the samples' crops on every
 * 10th line only (a line with them is ~33 KB): the frame is the newest line that has them, when there is one in the
 * file's tail, else the newest line without images.
 */
export async function lastPatchOrder(
  dir: string,
  runId: string,
  clustersPerSide: number,
  encode: (pixels: Uint8Array, n: number, size: number) => Promise<string[]>,
): Promise<PatchOrderFrame | null> {
  const p = nodePath.join(dir, PATCH_ORDER_FILE);
  let text: string;
  try {
    // the tail only: a long run's file grows by a line a step
    const fd = fs.openSync(p, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, 4 << 20);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      text = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
  const k = clustersPerSide * clustersPerSide;
  const lines = text.split('\n');
  let plain: PatchOrderFrame | null = null;
  for (let i = lines.length - 1; i >= 0; i--) {
    let rec: PatchOrderLine;
    try {
      rec = JSON.parse(lines[i] as string) as PatchOrderLine;
    } catch {
      continue; // a line cut by a sync in progress, or the cut first line of the tail
    }
    if (
      typeof rec?.step !== 'number' ||
      !Array.isArray(rec.order) ||
      !Array.isArray(rec.cluster_error) ||
      rec.order.some((o) => !Array.isArray(o) || o.length !== k) ||
      rec.cluster_error.some((e) => !Array.isArray(e) || e.length !== k - 1)
    )
      continue;
    const frame = {
      runId,
      step: rec.step,
      clustersPerSide,
      k,
      order: rec.order,
      clusterError: rec.cluster_error,
    };
    const s = rec.samples;
    if (s && Number.isInteger(s.count) && Number.isInteger(s.size) && typeof s.pixels_b64 === 'string') {
      const pixels = new Uint8Array(Buffer.from(s.pixels_b64, 'base64'));
      if (pixels.length === s.count * s.size * s.size * 3 && s.count === rec.order.length)
        return { ...frame, images: await encode(pixels, s.count, s.size) };
    }
    plain ??= { ...frame, images: [] };
  }
  return plain;
}

/** What a followed folder reports. */
export interface ExternalEvents {
  metrics(records: MetricRecord[]): void;
  patchOrder(): void;
  checkpoints(): void;
}

/**
 * Follows one external run folder: new metrics lines (a line cut by a sync in progress waits for its end), the
 * patch-order file and the checkpoints. A metrics file that shrank (the run resumed from an earlier checkpoint)
 * restarts the count without reporting the kept lines again.
 */
export class ExternalFollower {
  private seen: number;
  private readonly watcher: FSWatcher;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly dir: string,
    private readonly events: ExternalEvents,
    /** When true, changes are counted but not reported (a local job writes the folder and reports itself). */
    private readonly quiet: () => boolean,
  ) {
    this.seen = this.readLines().length;
    this.watcher = watch(
      [metricsPath(dir), nodePath.join(dir, PATCH_ORDER_FILE), nodePath.join(dir, 'checkpoints')],
      {
        ignoreInitial: true,
        depth: 1,
      },
    );
    this.watcher.on('all', (_event, path) => this.changed(path));
    // what was appended before the watches were in place
    this.watcher.on('ready', () => {
      this.readNew();
      if (!this.quiet() && fs.existsSync(nodePath.join(dir, PATCH_ORDER_FILE))) this.events.patchOrder();
    });
  }

  private readLines(): MetricRecord[] {
    try {
      const text = fs.readFileSync(metricsPath(this.dir), 'utf8');
      // the last line counts only once it ends with its newline
      const whole = text.endsWith('\n') ? text : text.slice(0, text.lastIndexOf('\n') + 1);
      return parseMetrics(whole).records.map((r) => r.record as MetricRecord);
    } catch {
      return [];
    }
  }

  private changed(path: string): void {
    const base = nodePath.basename(path);
    if (base === PATCH_ORDER_FILE) {
      if (!this.quiet()) this.events.patchOrder();
      return;
    }
    if (base !== 'metrics.jsonl') {
      if (!this.quiet()) this.events.checkpoints();
      return;
    }
    // a sync writes in bursts: read once it settles
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.readNew(), 100);
  }

  /** Reports the lines added since the last read (also called directly, e.g. by tests). */
  readNew(): void {
    const lines = this.readLines();
    const fresh = lines.length >= this.seen ? lines.slice(this.seen) : [];
    this.seen = lines.length;
    const records = fresh.filter((r) => !isEventLine(r));
    if (records.length > 0 && !this.quiet()) this.events.metrics(records);
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    await this.watcher.close();
  }
}

/** The persisted list of external run folders (WORKSPACE/external-runs.json). */
export class ExternalList {
  constructor(private readonly file: string) {}

  read(): string[] {
    try {
      const v = JSON.parse(fs.readFileSync(this.file, 'utf8')) as unknown;
      return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
    } catch {
      return [];
    }
  }

  write(dirs: readonly string[]): void {
    fs.mkdirSync(nodePath.dirname(this.file), { recursive: true });
    replaceFile(this.file, JSON.stringify([...new Set(dirs)], null, 2));
  }
}
