// Registered dataset folders: persisted, scanned, watched (debounced), with lazily encoded thumbnails.
import { watch, type FSWatcher } from 'chokidar';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import sharp from 'sharp';
import { z } from 'zod';
import type { DatasetEntry } from '../api/contract.js';
import {
  BUILTIN_SAMPLE_DIR,
  loadSplit,
  scanDataset,
  type DatasetScan,
  type LoadedSplit,
  type SplitName,
} from '../datasets/index.js';

interface Registered {
  id: string;
  path: string;
  builtin: boolean;
}

/** Thumbnails are cut from the cache at this side. */
const THUMB_SIDE = 48;
/** Rescans wait this long after the last change in a folder. */
const DEBOUNCE_MS = 400;

/** A FIFO, socket or device: what the dataset layer never opens. */
function isSpecialFile(st: fs.Stats): boolean {
  return st.isFIFO() || st.isSocket() || st.isCharacterDevice() || st.isBlockDevice();
}

function idFor(path: string): string {
  return `ds-${createHash('sha256').update(path).digest('hex').slice(0, 10)}`;
}

function toEntry(r: Registered, scan: DatasetScan): DatasetEntry {
  return {
    id: r.id,
    path: r.path,
    name: r.builtin ? 'Fashion-MNIST sample (built in)' : nodePath.basename(r.path),
    builtin: r.builtin,
    kind: scan.kind,
    layout: scan.layout,
    classes: scan.classes,
    splits: scan.splits.map((s) => ({
      name: s.name,
      perClass:
        scan.classes.length > 0
          ? Object.fromEntries(scan.classes.map((c, i) => [c, s.perClass[i] ?? 0]))
          : { '': s.count },
      images: s.count,
    })),
    images: scan.images,
    sizes: {
      minWidth: scan.sizes.minWidth,
      maxWidth: scan.sizes.maxWidth,
      minHeight: scan.sizes.minHeight,
      maxHeight: scan.sizes.maxHeight,
    },
    skipped: scan.skipped.map((s) => ({ path: s.path, reason: s.reason })),
    warnings: scan.warnings.map((w) => w.message),
    scannedAt: new Date().toISOString(),
    status: 'ready',
  };
}

const RegistryFile = z.array(z.object({ id: z.string(), path: z.string(), builtin: z.boolean() }));

/**
 * The registered folders saved in the workspace (none when the file does not exist yet). Anything but a regular file
 * of that shape is an error naming the file: a FIFO would block the read, and a file we cannot read must not be
 * overwritten by the next save (the user's registrations would be lost).
 */
function readRegistry(file: string): Registered[] {
  if (!fs.existsSync(file)) return [];
  if (!fs.statSync(file).isFile())
    throw new Error(`${file}: not a regular file; move it away to start afresh`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(
      `${file}: not valid JSON (${e instanceof Error ? e.message : String(e)}); fix or move it away`,
    );
  }
  const r = RegistryFile.safeParse(raw);
  if (!r.success)
    throw new Error(`${file}: not a dataset registry (${r.error.issues[0]?.message ?? 'bad shape'})`);
  return r.data;
}

/** The workspace's datasets; `onUpdate` hears every (re)scan and removal. */
export class DatasetRegistry {
  private readonly file: string;
  private readonly items = new Map<string, Registered>();
  private readonly scans = new Map<string, DatasetScan>();
  private readonly entries = new Map<string, DatasetEntry>();
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly thumbs = new Map<string, Promise<LoadedSplit>>();

  constructor(
    workspace: string,
    private readonly cacheDir: string,
    private readonly onUpdate: (e: { entry?: DatasetEntry; removed?: string }) => void,
  ) {
    this.file = nodePath.join(workspace, 'datasets.json');
    const saved = readRegistry(this.file);
    // the built-in sample is always there, first
    const builtin = { id: 'builtin-sample', path: BUILTIN_SAMPLE_DIR, builtin: true };
    for (const r of [builtin, ...saved.filter((x) => !x.builtin)]) this.items.set(r.id, r);
  }

  /** Folders the workbench may read (for the path checks of `digpt serve`). */
  roots(): string[] {
    return [...this.items.values()].map((r) => r.path);
  }

  get(id: string): Registered {
    const r = this.items.get(id);
    if (!r) throw new Error(`no dataset with id ${id}`);
    return r;
  }

  private save(): void {
    fs.mkdirSync(nodePath.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp-${process.pid}`;
    fs.writeFileSync(
      tmp,
      JSON.stringify(
        [...this.items.values()].filter((r) => !r.builtin),
        null,
        1,
      ),
    );
    fs.renameSync(tmp, this.file);
  }

  /** Scans (or rescans) one dataset and reports it. */
  async rescan(id: string): Promise<DatasetEntry> {
    const r = this.get(id);
    let entry: DatasetEntry;
    try {
      const scan = await scanDataset(r.path);
      this.scans.set(id, scan);
      for (const k of [...this.thumbs.keys()]) if (k.startsWith(`${id}:`)) this.thumbs.delete(k);
      entry = toEntry(r, scan);
    } catch (e) {
      const prev = this.entries.get(id);
      entry = {
        ...(prev ?? {
          id,
          path: r.path,
          name: nodePath.basename(r.path),
          builtin: r.builtin,
          kind: 'folder' as const,
          layout: 'flat',
          classes: [],
          splits: [],
          images: 0,
          sizes: { minWidth: 0, maxWidth: 0, minHeight: 0, maxHeight: 0 },
          skipped: [],
          warnings: [],
        }),
        scannedAt: new Date().toISOString(),
        status: 'error',
        error: e instanceof Error ? e.message : String(e),
      };
    }
    this.entries.set(id, entry);
    this.onUpdate({ entry });
    return entry;
  }

  /** Every dataset, scanning those not scanned yet. */
  async list(): Promise<DatasetEntry[]> {
    const out: DatasetEntry[] = [];
    for (const id of this.items.keys()) out.push(this.entries.get(id) ?? (await this.rescan(id)));
    return out;
  }

  /** Registers a folder (or returns it if registered), scans it and watches it. */
  async add(path: string): Promise<DatasetEntry> {
    const abs = nodePath.resolve(path);
    if (!fs.existsSync(abs)) throw new Error(`${abs}: no such folder`);
    if (!fs.statSync(abs).isDirectory())
      throw new Error(`${abs}: not a folder (drop or choose a dataset folder)`);
    const id = abs === BUILTIN_SAMPLE_DIR ? 'builtin-sample' : idFor(abs);
    if (!this.items.has(id)) {
      this.items.set(id, { id, path: abs, builtin: false });
      this.save();
    }
    this.watchFolder(id);
    return this.entries.get(id) ?? this.rescan(id);
  }

  remove(id: string): void {
    const r = this.get(id);
    if (r.builtin) throw new Error('the built-in sample cannot be removed');
    this.items.delete(id);
    this.entries.delete(id);
    this.scans.delete(id);
    void this.watchers.get(id)?.close();
    this.watchers.delete(id);
    this.save();
    this.onUpdate({ removed: id });
  }

  /** Starts watching every registered folder (the built-in sample does not change). */
  watchAll(): void {
    for (const r of this.items.values()) if (!r.builtin) this.watchFolder(r.id);
  }

  private watchFolder(id: string): void {
    if (this.watchers.has(id)) return;
    const r = this.get(id);
    const w = watch(r.path, {
      ignoreInitial: true,
      depth: 4,
      awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 },
      // links are not followed out of the folder (the scan does not follow them either), and FIFOs, sockets and
      // devices are not watched at all: a file watch opens its file on macOS (kqueue), which a FIFO blocks for good
      followSymlinks: false,
      ignored: (_path, stats) => stats !== undefined && isSpecialFile(stats),
    });
    const kick = (): void => {
      clearTimeout(this.timers.get(id));
      this.timers.set(
        id,
        setTimeout(() => {
          if (this.items.has(id)) void this.rescan(id);
        }, DEBOUNCE_MS),
      );
    };
    w.on('add', kick).on('unlink', kick).on('change', kick).on('addDir', kick).on('unlinkDir', kick);
    this.watchers.set(id, w);
  }

  /** A page of thumbnails of one split, as PNG data URLs. */
  async thumbnails(
    id: string,
    split: SplitName,
    offset: number,
    limit: number,
  ): Promise<{ total: number; items: { index: number; label: string; png: string }[] }> {
    this.get(id);
    const scan = this.scans.get(id) ?? (await this.rescan(id), this.scans.get(id));
    if (!scan) throw new Error(`dataset ${id} could not be scanned`);
    if (!scan.splits.some((s) => s.name === split)) return { total: 0, items: [] };
    const key = `${id}:${split}`;
    let p = this.thumbs.get(key);
    if (!p) {
      p = loadSplit(scan, split, { side: THUMB_SIDE, cacheDir: this.cacheDir });
      this.thumbs.set(key, p);
    }
    const loaded = await p;
    const per = THUMB_SIDE * THUMB_SIDE * 3;
    const end = Math.min(loaded.count, offset + limit);
    const items: { index: number; label: string; png: string }[] = [];
    for (let i = offset; i < end; i++) {
      const png = await sharp(Buffer.from(loaded.images.subarray(i * per, (i + 1) * per)), {
        raw: { width: THUMB_SIDE, height: THUMB_SIDE, channels: 3 },
      })
        .png()
        .toBuffer();
      const y = loaded.labels[i] as number;
      items.push({
        index: i,
        label: y >= 0 ? (loaded.classes[y] ?? String(y)) : '',
        png: `data:image/png;base64,${png.toString('base64')}`,
      });
    }
    return { total: loaded.count, items };
  }

  async close(): Promise<void> {
    for (const t of this.timers.values()) clearTimeout(t);
    await Promise.all([...this.watchers.values()].map((w) => w.close()));
    this.watchers.clear();
  }
}

/** RGB [n, size, size, 3] images as PNG data URLs. */
export async function pngDataUrls(pixels: Uint8Array, count: number, size: number): Promise<string[]> {
  const per = size * size * 3;
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const png = await sharp(Buffer.from(pixels.subarray(i * per, (i + 1) * per)), {
      raw: { width: size, height: size, channels: 3 },
    })
      .png()
      .toBuffer();
    out.push(`data:image/png;base64,${png.toString('base64')}`);
  }
  return out;
}
