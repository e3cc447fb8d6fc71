// scanDataset: finds a dataset's layout, classes, splits, image sizes and bad files, reading headers only.
import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { fileKind, readRegular, realInside, statRegular, UnsafeFileError } from './files.js';

import {
  IDX_IMAGES_MAGIC,
  IDX_IMAGES_RE,
  IDX_LABELS_MAGIC,
  IdxError,
  idxLabelNames,
  idxLengthLooksRight,
  readIdx,
  readIdxHeader,
} from './idx.js';
import { classifyName, ImageError, isHidden, probeImage, validateImage, type ImageInfo } from './image.js';
import { defaultConcurrency, forEachLimit } from './pool.js';
import { carveValidation } from './split.js';
import {
  SPLIT_NAMES,
  type DatasetScan,
  type FileItem,
  type ScanOptions,
  type ScanWarning,
  type SizeStats,
  type SkippedFile,
  type SplitName,
  type SplitScan,
} from './types.js';

/** Folder names that make a split, when they sit beside a `train/` folder. */
const SPLIT_DIRS: Record<string, SplitName> = {
  train: 'train',
  val: 'val',
  valid: 'val',
  validation: 'val',
  test: 'test',
};

/** Orders names by UTF-16 code units, as Python's sorted() nearly does: independent of the locale. */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Collects what a scan finds along the way. */
class Findings {
  readonly skipped: SkippedFile[] = [];
  readonly warnings: ScanWarning[] = [];
  readonly sizes: SizeStats = {
    count: 0,
    minWidth: 0,
    maxWidth: 0,
    minHeight: 0,
    maxHeight: 0,
    channels: {},
    formats: {},
  };

  skip(path: string, code: SkippedFile['code'], reason: string): void {
    this.skipped.push({ path, code, reason });
  }

  warn(w: ScanWarning): void {
    this.warnings.push(w);
  }

  measure(info: ImageInfo, times = 1): void {
    const s = this.sizes;
    if (s.count === 0) {
      s.minWidth = s.maxWidth = info.width;
      s.minHeight = s.maxHeight = info.height;
    }
    s.count += times;
    s.minWidth = Math.min(s.minWidth, info.width);
    s.maxWidth = Math.max(s.maxWidth, info.width);
    s.minHeight = Math.min(s.minHeight, info.height);
    s.maxHeight = Math.max(s.maxHeight, info.height);
    const ch = String(info.channels);
    s.channels[ch] = (s.channels[ch] ?? 0) + times;
    s.formats[info.format] = (s.formats[info.format] ?? 0) + times;
  }
}

/**
 * Scans a dataset folder. Layouts, tried in order:
 * - IDX: `*-images-idx3-ubyte[.gz]` files with their `*-labels-idx1-ubyte[.gz]` (`train-*` is train, `t10k-*`
 *   or `test-*` is test); names for the labels come from a `classes.txt` beside them, one per line, if present;
 * - splits: a `train/` folder, with `val/` (or `valid/`, `validation/`) and/or `test/` beside it and no other
 *   folder; each split holds class sub-folders or images;
 * - ImageFolder: class sub-folders (images anywhere below a class folder belong to it);
 * - flat: images only, unlabelled.
 * When there is no val split, `valFraction` of each train class is moved to a carved val split (seeded, stratified).
 * Throws only when `dir` is not a readable folder; bad files are skipped and listed. FIFOs, sockets and devices are
 * never opened (skipped as `special-file`), and symbolic links are followed only when their target stays inside
 * the dataset folder (else skipped as `outside-dataset`).
 */
export async function scanDataset(dir: string, opts: ScanOptions = {}): Promise<DatasetScan> {
  const root = resolve(dir);
  const st = await stat(root);
  if (!st.isDirectory()) throw new Error(`not a folder: ${root}`);
  const fraction = opts.valFraction ?? 0.1;
  const seed = opts.seed ?? 0;
  if (!(fraction >= 0 && fraction < 1))
    throw new RangeError(`valFraction must be in [0, 1), got ${fraction}`);
  if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);

  const findings = new Findings();
  const where: Where = { root, rootReal: await realpath(root) };
  const top = await listDir(where, root, '', findings);
  const hasIdx = top.files.some((f) => IDX_IMAGES_RE.test(f));
  const scan = hasIdx
    ? await scanIdx(where, top, fraction, seed, opts, findings)
    : await scanFolder(where, top, fraction, seed, opts, findings);
  findings.skipped.sort((a, b) => byCodeUnits(a.path, b.path));
  if (scan.images === 0) findings.warn({ code: 'no-images', message: 'no usable images found' });
  return scan;
}

/** The dataset folder as given (paths are reported relative to it) and its real path (links must stay inside). */
interface Where {
  root: string;
  rootReal: string;
}

interface Listing {
  dirs: string[];
  files: string[];
}

/**
 * Non-hidden entries of the folder `abs` (`rel` from the root), sorted. Symbolic links are resolved: one whose
 * target leaves the dataset is skipped here with its reason; a dangling one counts as a file (reported when probed).
 */
async function listDir(where: Where, abs: string, rel: string, findings: Findings): Promise<Listing> {
  const entries: Dirent[] = await readdir(abs, { withFileTypes: true });
  const dirs: string[] = [];
  const files: string[] = [];
  for (const e of entries) {
    if (isHidden(e.name)) continue;
    let isDir = e.isDirectory();
    if (e.isSymbolicLink()) {
      const target = await realInside(where.rootReal, join(abs, e.name)).catch((err: unknown) => err);
      if (target instanceof UnsafeFileError) {
        findings.skip(relJoin(rel, e.name), target.code, target.message);
        continue;
      }
      isDir =
        typeof target === 'string' &&
        (await stat(target).then(
          (s) => s.isDirectory(),
          () => false,
        ));
    }
    (isDir ? dirs : files).push(e.name);
  }
  return { dirs: dirs.sort(byCodeUnits), files: files.sort(byCodeUnits) };
}

function relJoin(a: string, b: string): string {
  return a === '' ? b : `${a}/${b}`;
}

// --- folders ---

/** A file to probe and where it belongs. */
interface Candidate {
  rel: string;
  /** Index into the groups; -1 for files outside any group (always skipped). */
  group: number;
  /** Class name, or null when the group is flat. */
  cls: string | null;
  /** Why it is skipped without probing, if so. */
  misplaced?: string;
}

/** A split folder (or the root): its class folders, or none when it is flat. */
interface Group {
  split: SplitName;
  rel: string;
  classDirs: string[] | null;
}

async function scanFolder(
  where: Where,
  top: Listing,
  fraction: number,
  seed: number,
  opts: ScanOptions,
  findings: Findings,
): Promise<DatasetScan> {
  const splitMode =
    top.dirs.some((d) => d.toLowerCase() === 'train') && top.dirs.every((d) => d.toLowerCase() in SPLIT_DIRS);
  const candidates: Candidate[] = [];
  const groups: Group[] = [];
  const { root } = where;
  const seenDirs = new Set<string>([where.rootReal]);

  const addGroup = async (split: SplitName, rel: string, listing: Listing): Promise<void> => {
    const g = groups.length;
    const labelled = listing.dirs.length > 0;
    groups.push({ split, rel, classDirs: labelled ? listing.dirs : null });
    for (const f of listing.files) {
      candidates.push({
        rel: relJoin(rel, f),
        group: g,
        cls: null,
        ...(labelled ? { misplaced: 'outside any class folder' } : {}),
      });
    }
    for (const cls of listing.dirs) {
      const files: string[] = [];
      await walk(where, join(root, rel, cls), relJoin(rel, cls), files, findings, seenDirs);
      for (const f of files) candidates.push({ rel: f, group: g, cls });
    }
  };

  if (splitMode) {
    for (const f of top.files)
      candidates.push({ rel: f, group: -1, cls: null, misplaced: 'outside the split folders' });
    for (const d of top.dirs) {
      const split = SPLIT_DIRS[d.toLowerCase()] as SplitName;
      if (groups.some((g) => g.split === split)) {
        findings.warn({
          code: 'ignored-content',
          message: `folder ${d}/ ignored: another folder is the ${split} split`,
          split,
        });
        continue;
      }
      const listing = await listDir(where, join(root, d), d, findings).catch((err: unknown) => {
        findings.skip(`${d}/`, 'unreadable', `unreadable folder: ${errText(err)}`);
        return null;
      });
      if (listing) await addGroup(split, d, listing);
    }
  } else {
    await addGroup('train', '', top);
  }

  // probe every candidate
  const infos: (ImageInfo | null)[] = new Array(candidates.length).fill(null);
  let done = 0;
  await forEachLimit(candidates.length, opts.concurrency ?? defaultConcurrency(), async (i) => {
    const c = candidates[i] as Candidate;
    infos[i] = await probeFile(where, c, opts.validate === true, findings);
    opts.onProgress?.(++done, candidates.length);
  });

  const classes = [...new Set(groups.flatMap((g) => g.classDirs ?? []))].sort(byCodeUnits);
  const classIndex = new Map(classes.map((c, i) => [c, i]));
  const itemsByGroup: FileItem[][] = groups.map(() => []);
  candidates.forEach((c, i) => {
    const info = infos[i];
    if (!info) return;
    findings.measure(info);
    itemsByGroup[c.group]?.push({
      path: c.rel,
      label: c.cls === null ? -1 : (classIndex.get(c.cls) as number),
    });
  });
  for (const items of itemsByGroup) items.sort((a, b) => byCodeUnits(a.path, b.path));

  // empty class folders and unlabelled splits
  groups.forEach((g, gi) => {
    if (!g.classDirs) {
      if (classes.length > 0) {
        findings.warn({
          code: 'unlabelled-split',
          message: `${g.rel}/ has no class folders: its images are unlabelled`,
          split: g.split,
        });
      }
      return;
    }
    for (const cls of g.classDirs) {
      const label = classIndex.get(cls) as number;
      if (!(itemsByGroup[gi] as FileItem[]).some((it) => it.label === label)) {
        findings.warn({
          code: 'empty-class',
          message: `class folder ${relJoin(g.rel, cls)}/ has no usable images`,
          class: cls,
          split: g.split,
        });
      }
    }
  });

  // splits, carving val out of train when there is none
  const splitItems = new Map<SplitName, FileItem[]>();
  groups.forEach((g, gi) => splitItems.set(g.split, itemsByGroup[gi] as FileItem[]));
  const hasVal = splitItems.has('val');
  const carve = !hasVal && fraction > 0 && splitItems.has('train');
  if (carve) {
    const train = splitItems.get('train') as FileItem[];
    const isVal = carveValidation(
      train.map((it) => it.label),
      classes,
      fraction,
      seed,
    );
    splitItems.set(
      'train',
      train.filter((_, i) => !isVal[i]),
    );
    splitItems.set(
      'val',
      train.filter((_, i) => isVal[i]),
    );
  }

  const splits: SplitScan[] = [];
  for (const name of SPLIT_NAMES) {
    const items = splitItems.get(name);
    if (!items) continue;
    const perClass = new Array<number>(classes.length).fill(0);
    let unlabelled = 0;
    for (const it of items) {
      if (it.label < 0) unlabelled++;
      else perClass[it.label] = (perClass[it.label] as number) + 1;
    }
    splits.push({
      name,
      origin: name === 'val' && carve ? 'carved' : 'folder',
      count: items.length,
      perClass,
      unlabelled,
      source: { kind: 'files', items },
    });
  }
  warnMissingClasses(splits, classes, findings);

  return {
    format: 'digpt-dataset-scan',
    version: 1,
    root,
    kind: 'folder',
    layout: splitMode ? 'splits' : classes.length > 0 ? 'imagefolder' : 'flat',
    classes,
    splits,
    val: { origin: hasVal ? 'folder' : carve ? 'carved' : 'none', fraction: carve ? fraction : 0, seed },
    images: splits.reduce((a, s) => a + s.count, 0),
    sizes: findings.sizes,
    skipped: findings.skipped,
    warnings: findings.warnings,
    validated: opts.validate === true,
  };
}

/** Collects the files under a class folder, recursively; a folder reached twice through links is walked once. */
async function walk(
  where: Where,
  abs: string,
  rel: string,
  out: string[],
  findings: Findings,
  seen: Set<string>,
): Promise<void> {
  let listing: Listing;
  try {
    const real = await realpath(abs);
    if (seen.has(real)) return;
    seen.add(real);
    listing = await listDir(where, abs, rel, findings);
  } catch (err) {
    findings.skip(`${rel}/`, 'unreadable', `unreadable folder: ${errText(err)}`);
    return;
  }
  for (const f of listing.files) out.push(relJoin(rel, f));
  for (const d of listing.dirs) await walk(where, join(abs, d), relJoin(rel, d), out, findings, seen);
}

/** A candidate's info, or null after recording why it is skipped. */
async function probeFile(
  where: Where,
  c: Candidate,
  validate: boolean,
  findings: Findings,
): Promise<ImageInfo | null> {
  const kind = classifyName(c.rel);
  if (kind === 'not-image') {
    findings.skip(c.rel, 'not-an-image', 'not an image');
    return null;
  }
  if (kind === 'other-image') {
    const ext = c.rel.slice(c.rel.lastIndexOf('.')).toLowerCase();
    findings.skip(c.rel, 'unsupported-format', `unsupported image format (${ext})`);
    return null;
  }
  if (c.misplaced) {
    findings.skip(c.rel, 'misplaced', c.misplaced);
    return null;
  }
  try {
    // the link's target is read, so a file swapped for a link out of the dataset after the listing is refused too
    const real = await realInside(where.rootReal, join(where.root, c.rel));
    const st = await stat(real);
    if (!st.isFile()) {
      findings.skip(c.rel, 'special-file', `not a regular file (${fileKind(st)})`);
      return null;
    }
    if (st.size === 0) {
      findings.skip(c.rel, 'empty-file', 'empty file (0 bytes)');
      return null;
    }
    return validate ? await validateImage(real) : await probeImage(real, st.size);
  } catch (err) {
    if (err instanceof ImageError || err instanceof UnsafeFileError)
      findings.skip(c.rel, err.code, err.message);
    else findings.skip(c.rel, 'unreadable', `unreadable: ${errText(err)}`);
    return null;
  }
}

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? (err instanceof Error ? err.message : String(err));
}

/** Warns about empty splits, and classes that have train images but none in another split (or the reverse). */
function warnMissingClasses(splits: SplitScan[], classes: string[], findings: Findings): void {
  for (const s of splits) {
    if (s.count === 0)
      findings.warn({ code: 'empty-split', message: `the ${s.name} split has no images`, split: s.name });
  }
  const train = splits.find((s) => s.name === 'train');
  if (!train || classes.length === 0) return;
  const emptyWarned = new Set(
    findings.warnings.filter((w) => w.code === 'empty-class').map((w) => `${w.split}\u0000${w.class}`),
  );
  for (const s of splits) {
    if (s === train || s.count === 0 || s.count === s.unlabelled) continue;
    classes.forEach((cls, i) => {
      const inTrain = (train.perClass[i] as number) > 0;
      const inSplit = (s.perClass[i] as number) > 0;
      if (inTrain && !inSplit && !emptyWarned.has(`${s.name}\u0000${cls}`)) {
        findings.warn({
          code: 'class-missing-from-split',
          message: `class ${cls} has train images but none in ${s.name}`,
          class: cls,
          split: s.name,
        });
      }
      if (!inTrain && inSplit && !emptyWarned.has(`train\u0000${cls}`)) {
        findings.warn({
          code: 'class-missing-from-split',
          message: `class ${cls} has ${s.name} images but none in train`,
          class: cls,
          split: 'train',
        });
      }
    });
  }
}

// --- IDX ---

function idxSplitOf(prefix: string): SplitName | null {
  const p = prefix.toLowerCase();
  if (/(^|[-_.])train$/.test(p)) return 'train';
  if (/(^|[-_.])(t10k|test)$/.test(p)) return 'test';
  if (/(^|[-_.])(val|valid|validation)$/.test(p)) return 'val';
  return null;
}

interface IdxPair {
  split: SplitName;
  images: string;
  labels: string;
  count: number;
  rows: number;
  cols: number;
  labelData: Uint8Array;
}

async function scanIdx(
  where: Where,
  top: Listing,
  fraction: number,
  seed: number,
  opts: ScanOptions,
  findings: Findings,
): Promise<DatasetScan> {
  if (top.dirs.length > 0) {
    findings.warn({
      code: 'ignored-content',
      message: `IDX dataset: sub-folders ignored (${top.dirs.map((d) => `${d}/`).join(', ')})`,
    });
  }
  const lower = new Map(top.files.map((f) => [f.toLowerCase(), f]));
  // an uncompressed file wins over its .gz twin (MNIST downloads often leave both)
  const imageFiles = top.files
    .filter((f) => IDX_IMAGES_RE.test(f))
    .sort(
      (a, b) =>
        Number(a.toLowerCase().endsWith('.gz')) - Number(b.toLowerCase().endsWith('.gz')) ||
        byCodeUnits(a, b),
    );
  const pairs: IdxPair[] = [];
  const prefixes = new Set<string>();
  let done = 0;
  for (const images of imageFiles) {
    const prefix = (IDX_IMAGES_RE.exec(images) as RegExpExecArray)[1] as string;
    opts.onProgress?.(++done, imageFiles.length);
    if (prefixes.has(prefix.toLowerCase())) continue; // the .gz twin of a file already taken
    prefixes.add(prefix.toLowerCase());
    const split = idxSplitOf(prefix);
    if (!split) {
      findings.skip(
        images,
        'bad-idx',
        `cannot tell the split from the name (expected train-, t10k- or test-)`,
      );
      continue;
    }
    if (pairs.some((p) => p.split === split)) {
      findings.skip(images, 'bad-idx', `another IDX file already provides the ${split} split`);
      continue;
    }
    const labels = idxLabelNames(prefix)
      .map((n) => lower.get(n.toLowerCase()))
      .find((n) => n !== undefined);
    if (!labels) {
      findings.skip(images, 'bad-idx', `no matching labels file (${prefix}-labels-idx1-ubyte[.gz])`);
      continue;
    }
    const unsafe = await unsafeFileOf(where, [images, labels]);
    if (unsafe) {
      const [bad, err] = unsafe;
      const [other, role] = bad === images ? [labels, 'images'] : [images, 'labels'];
      findings.skip(bad, err.code, err.message);
      findings.skip(other, 'bad-idx', `its ${role} file ${bad} is unusable: ${err.message}`);
      continue;
    }
    try {
      pairs.push(await readIdxPair(where.root, split, images, labels, opts.validate === true));
    } catch (err) {
      const msg =
        err instanceof IdxError || err instanceof UnsafeFileError
          ? err.message
          : `unreadable: ${errText(err)}`;
      findings.skip(images, 'bad-idx', msg);
      findings.skip(labels, 'bad-idx', `its images file ${images} is unusable`);
    }
  }

  const maxLabel = pairs.reduce((m, p) => p.labelData.reduce((a, b) => Math.max(a, b), m), -1);
  // a classes.txt skipped where the folder was listed (a link out of the dataset) is not looked at again
  const classes = top.files.includes('classes.txt')
    ? await idxClassNames(where, maxLabel + 1, findings)
    : Array.from({ length: maxLabel + 1 }, (_, i) => String(i));
  const splits: SplitScan[] = [];
  const hasVal = pairs.some((p) => p.split === 'val');
  const carve = !hasVal && fraction > 0 && pairs.some((p) => p.split === 'train');
  const made = new Map<SplitName, SplitScan>();
  for (const p of pairs) {
    findings.measure({ width: p.cols, height: p.rows, channels: 1, format: 'idx' }, p.count);
    const source = {
      kind: 'idx' as const,
      images: p.images,
      labels: p.labels,
      count: p.count,
      rows: p.rows,
      cols: p.cols,
    };
    if (p.split === 'train' && carve) {
      const isVal = carveValidation(p.labelData, classes, fraction, seed);
      const trainIdx: number[] = [];
      const valIdx: number[] = [];
      isVal.forEach((v, i) => (v ? valIdx : trainIdx).push(i));
      made.set(
        'train',
        idxSplit('train', 'idx', p.labelData, trainIdx, classes.length, { ...source, indices: trainIdx }),
      );
      made.set(
        'val',
        idxSplit('val', 'carved', p.labelData, valIdx, classes.length, { ...source, indices: valIdx }),
      );
    } else {
      const all = Array.from({ length: p.count }, (_, i) => i);
      made.set(
        p.split,
        idxSplit(p.split, 'idx', p.labelData, all, classes.length, { ...source, indices: null }),
      );
    }
  }
  for (const name of SPLIT_NAMES) {
    const s = made.get(name);
    if (s) splits.push(s);
  }
  warnMissingClasses(splits, classes, findings);

  return {
    format: 'digpt-dataset-scan',
    version: 1,
    root: where.root,
    kind: 'idx',
    layout: 'idx',
    classes,
    splits,
    val: { origin: hasVal ? 'idx' : carve ? 'carved' : 'none', fraction: carve ? fraction : 0, seed },
    images: splits.reduce((a, s) => a + s.count, 0),
    sizes: findings.sizes,
    skipped: findings.skipped,
    warnings: findings.warnings,
    validated: opts.validate === true,
  };
}

function idxSplit(
  name: SplitName,
  origin: 'idx' | 'carved',
  labels: Uint8Array,
  indices: number[],
  nClasses: number,
  source: Extract<SplitScan['source'], { kind: 'idx' }>,
): SplitScan {
  const perClass = new Array<number>(nClasses).fill(0);
  for (const i of indices) perClass[labels[i] as number] = (perClass[labels[i] as number] as number) + 1;
  return { name, origin, count: indices.length, perClass, unlabelled: 0, source };
}

/** Reads and checks an IDX images/labels pair: the images' header (or all of it when validating), all labels. */
async function readIdxPair(
  root: string,
  split: SplitName,
  images: string,
  labels: string,
  validate: boolean,
): Promise<IdxPair> {
  const imgPath = join(root, images);
  const header = validate ? (await readIdx(imgPath)).header : await readIdxHeader(imgPath);
  if (header.magic !== IDX_IMAGES_MAGIC) {
    throw new IdxError(
      `${images}: magic 0x${header.magic.toString(16).padStart(8, '0')}, expected 0x00000803 (images)`,
    );
  }
  // a length that disagrees with the header is decided by a full read (truncated, or a multi-member gzip)
  if (!validate && !(await idxLengthLooksRight(imgPath, header))) await readIdx(imgPath);
  const [count, rows, cols] = header.dims as [number, number, number];
  if (rows === 0 || cols === 0) throw new IdxError(`${images}: images of ${rows}x${cols}`);
  let lab: Awaited<ReturnType<typeof readIdx>>;
  try {
    lab = await readIdx(join(root, labels));
  } catch (err) {
    throw new IdxError(`its labels file is unusable: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (lab.header.magic !== IDX_LABELS_MAGIC) {
    throw new IdxError(
      `its labels file ${labels} has magic 0x${lab.header.magic.toString(16).padStart(8, '0')}, expected 0x00000801`,
    );
  }
  if (lab.data.length !== count) {
    throw new IdxError(`${count} images but ${lab.data.length} labels in ${labels}`);
  }
  return { split, images, labels, count, rows, cols, labelData: lab.data };
}

/**
 * The first of `files` (relative to the root) that is not a regular file inside the dataset, with why; null when
 * all are (a missing or unreadable file is left for the reader to report).
 */
async function unsafeFileOf(where: Where, files: string[]): Promise<[string, UnsafeFileError] | null> {
  for (const f of files) {
    try {
      await statRegular(await realInside(where.rootReal, join(where.root, f)));
    } catch (err) {
      if (err instanceof UnsafeFileError) return [f, err];
    }
  }
  return null;
}

/** Class names of an IDX dataset: `classes.txt` (one per line) when it names them all, else "0", "1", ... */
async function idxClassNames(where: Where, n: number, findings: Findings): Promise<string[]> {
  const numbers = Array.from({ length: Math.max(0, n) }, (_, i) => String(i));
  const abs = join(where.root, 'classes.txt');
  let text: string;
  try {
    text = (await readRegular(await realInside(where.rootReal, abs))).toString('utf8');
  } catch (err) {
    // a missing classes.txt is the usual case; a FIFO or a link out of the dataset is never read, and said so
    if (err instanceof UnsafeFileError)
      findings.skip('classes.txt', err.code, `${err.message}: class names are numbers`);
    return numbers;
  }
  const names = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (names.length < n) {
    findings.warn({
      code: 'ignored-content',
      message: `classes.txt names ${names.length} classes but the labels go up to ${n - 1}: using numbers`,
    });
    return numbers;
  }
  return names.slice(0, Math.max(n, 0));
}
