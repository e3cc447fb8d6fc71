// loadSplit: a scanned split as one uint8 RGB array at the cache side, decoding only what the cache lacks.
import { realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTick } from 'node:timers/promises';

import { entryPath, prepareCacheDir, readEntry, writeFailure, writePixels, type SourceId } from './cache.js';
import { fileKind, readRegular, realInside, UnsafeFileError } from './files.js';
import { readIdx } from './idx.js';
import { checkFormat, decodeToRgb, ImageError } from './image.js';
import { defaultConcurrency, forEachLimit } from './pool.js';
import { resizeGreyToRgb } from './resize.js';
import type {
  DatasetScan,
  FileItem,
  LoadedSplit,
  LoadOptions,
  SkippedFile,
  SplitName,
  SplitScan,
} from './types.js';

/** The cache side for a training resolution: room for random crops, ceil(resolution * 1.14) (224 -> 256). */
export function cacheSideFor(resolution: number, margin = 1.14): number {
  return Math.ceil(resolution * margin - 1e-9);
}

/**
 * Loads one split of a scan (also one read back from JSON) as [N, side, side, 3] RGB. Image files are decoded
 * with sharp at most once per (path, size, mtime, side): later loads read the cache. Files that fail now
 * (truncated ones a scan without `validate` could not see, files gone since the scan) are left out and listed
 * in `skipped`. Throws when the split does not exist, or an IDX file no longer matches the scan.
 */
export async function loadSplit(
  scan: DatasetScan,
  split: SplitName,
  opts: LoadOptions,
): Promise<LoadedSplit> {
  if (scan.format !== 'digpt-dataset-scan' || scan.version !== 1)
    throw new Error('loadSplit: not a dataset scan');
  const { side } = opts;
  if (!Number.isInteger(side) || side < 1 || side > 4096)
    throw new RangeError(`side must be an integer in [1, 4096], got ${side}`);
  const s = scan.splits.find((x) => x.name === split);
  if (!s) {
    throw new Error(
      `the dataset has no ${split} split (it has: ${scan.splits.map((x) => x.name).join(', ') || 'none'})`,
    );
  }
  const warnings: string[] = [];
  let cacheOk = true;
  try {
    await prepareCacheDir(opts.cacheDir);
  } catch (err) {
    cacheOk = false;
    warnings.push(`cache folder ${opts.cacheDir} is not writable (${errText(err)}): nothing is cached`);
  }
  const ctx: Ctx = { scan, rootReal: await realpath(scan.root), side, opts, cacheOk, warnings };
  return s.source.kind === 'files' ? loadFiles(ctx, s.source.items) : loadIdx(ctx, s);
}

interface Ctx {
  scan: DatasetScan;
  /** The dataset folder's real path: files are read only when their own real path lies inside it. */
  rootReal: string;
  side: number;
  opts: LoadOptions;
  cacheOk: boolean;
  warnings: string[];
}

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? (err instanceof Error ? err.message : String(err));
}

/**
 * A file's cache identity (keyed by its path under the root, as before links were resolved) and its real path, which
 * is what gets read. A link out of the dataset throws UnsafeFileError; a FIFO, socket or device gives `kind`.
 */
async function sourceId(ctx: Ctx, abs: string): Promise<SourceId & { real: string; kind: string }> {
  const real = await realInside(ctx.rootReal, abs);
  const st = await stat(real, { bigint: true });
  return { abs, real, size: st.size, mtimeNs: st.mtimeNs, kind: fileKind(st) };
}

async function loadFiles(ctx: Ctx, items: FileItem[]): Promise<LoadedSplit> {
  const { scan, side, opts } = ctx;
  const per = side * side * 3;
  const n = items.length;
  const images = new Uint8Array(n * per);
  const failed: (SkippedFile | null)[] = new Array(n).fill(null);
  let decoded = 0;
  let cached = 0;
  let done = 0;
  let writeWarned = false;
  const cacheWrite = async (fn: () => Promise<void>): Promise<void> => {
    if (!ctx.cacheOk) return;
    await fn().catch((err: unknown) => {
      if (!writeWarned) ctx.warnings.push(`could not write to the cache (${errText(err)})`);
      writeWarned = true;
    });
  };
  opts.onProgress?.(0, n);

  await forEachLimit(n, opts.concurrency ?? defaultConcurrency(), async (i) => {
    const it = items[i] as FileItem;
    const fail = (code: SkippedFile['code'], reason: string): void => {
      failed[i] = { path: it.path, code, reason };
    };
    try {
      const id = await sourceId(ctx, join(scan.root, it.path));
      if (id.kind !== 'regular file') return fail('special-file', `not a regular file (${id.kind})`);
      if (id.size === 0n) return fail('empty-file', 'empty file (0 bytes)');
      const entry = entryPath(opts.cacheDir, side, id, 'image');
      const hit = ctx.cacheOk ? await readEntry(entry, side, 1, images, i * per) : null;
      if (hit === 'pixels') {
        cached++;
        return;
      }
      if (hit) {
        cached++;
        return fail(hit.code, hit.reason);
      }
      const buf = await readRegular(id.real);
      try {
        await checkFormat(buf);
        const rgb = await decodeToRgb(buf, side);
        decoded++;
        images.set(rgb, i * per);
        await cacheWrite(() => writePixels(entry, side, 1, rgb));
      } catch (err) {
        if (!(err instanceof ImageError)) throw err;
        decoded++;
        fail(err.code, err.message);
        await cacheWrite(() => writeFailure(entry, side, { code: err.code, reason: err.message }));
      }
    } catch (err) {
      if (err instanceof UnsafeFileError) fail(err.code, err.message);
      else fail('unreadable', `unreadable: ${errText(err)}`);
    } finally {
      opts.onProgress?.(++done, n);
    }
  });

  const keep = items.map((_, i) => failed[i] === null);
  const count = keep.filter(Boolean).length;
  let out = images;
  if (count < n) {
    out = new Uint8Array(count * per);
    let j = 0;
    for (let i = 0; i < n; i++) if (keep[i]) out.set(images.subarray(i * per, (i + 1) * per), j++ * per);
  }
  const kept = items.filter((_, i) => keep[i]);
  return {
    images: out,
    labels: Int32Array.from(kept, (it) => it.label),
    side,
    classes: [...scan.classes],
    count,
    files: kept.map((it) => it.path),
    skipped: failed.filter((f): f is SkippedFile => f !== null),
    stats: { decoded, cached },
    warnings: ctx.warnings,
  };
}

/** Resizes a whole IDX images file once (cached as one entry), then picks the split's images. */
async function loadIdx(ctx: Ctx, s: SplitScan): Promise<LoadedSplit> {
  const { scan, side, opts } = ctx;
  if (s.source.kind !== 'idx') throw new Error('unreachable');
  const src = s.source;
  const per = side * side * 3;
  const imgAbs = join(scan.root, src.images);
  const changed = (what: string): Error =>
    new Error(`${src.images}: ${what} since the scan; scan ${scan.root} again`);

  const id = await sourceId(ctx, imgAbs).catch((err: unknown) => {
    throw err instanceof UnsafeFileError ? changed(err.message) : err;
  });
  if (id.kind !== 'regular file') throw changed(`not a regular file (${id.kind})`);
  const entry = entryPath(opts.cacheDir, side, id, 'idx');
  let all = new Uint8Array(src.count * per);
  let decoded = 0;
  let cached = 0;
  const hit = ctx.cacheOk ? await readEntry(entry, side, src.count, all, 0) : null;
  if (hit === 'pixels') {
    cached = s.count;
    opts.onProgress?.(s.count, s.count);
  } else {
    const { header, data } = await readIdx(imgAbs);
    const [count, rows, cols] = header.dims;
    if (count !== src.count || rows !== src.rows || cols !== src.cols) throw changed('its size changed');
    const chunk = 1000;
    for (let a = 0; a < count; a += chunk) {
      const b = Math.min(count, a + chunk);
      resizeGreyToRgb(data.subarray(a * rows * cols, b * rows * cols), b - a, rows, cols, side, (k, rgb) =>
        all.set(rgb, (a + k) * per),
      );
      opts.onProgress?.(Math.round((b / count) * s.count), s.count);
      await nextTick(); // let progress messages out between chunks
    }
    decoded = count;
    if (ctx.cacheOk) {
      await writePixels(entry, side, count, all).catch((err: unknown) => {
        ctx.warnings.push(`could not write to the cache (${errText(err)})`);
      });
    }
  }

  const labAbs = join(scan.root, src.labels);
  // read by the listed name (a .gz is told by its name), once its real path is known to stay inside the dataset
  await realInside(ctx.rootReal, labAbs).catch((err: unknown) => {
    throw err instanceof UnsafeFileError
      ? new Error(`${src.labels}: ${err.message}; scan ${scan.root} again`)
      : err;
  });
  const lab = await readIdx(labAbs);
  if (lab.data.length !== src.count) throw changed(`${src.labels} changed`);
  const indices = src.indices;
  let labels: Int32Array;
  if (indices === null) {
    labels = Int32Array.from(lab.data);
  } else {
    const picked = new Uint8Array(indices.length * per);
    labels = new Int32Array(indices.length);
    indices.forEach((idx, j) => {
      if (!(idx >= 0 && idx < src.count)) throw changed('an index is out of range');
      picked.set(all.subarray(idx * per, (idx + 1) * per), j * per);
      labels[j] = lab.data[idx] as number;
    });
    all = picked;
  }
  const order = indices ?? Array.from({ length: src.count }, (_, i) => i);
  return {
    images: all,
    labels,
    side,
    classes: [...scan.classes],
    count: order.length,
    files: order.map((i) => `${src.images}#${i}`),
    skipped: [],
    stats: { decoded, cached },
    warnings: ctx.warnings,
  };
}
