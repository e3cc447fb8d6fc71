// Where the workbench reads and writes: every path resolved through its symbolic links before a root check, and the
// one rule for export targets (never the install, never a run's own files, never over a file unless asked).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import type { CheckpointFormat } from '../api/contract.js';

/** The workbench's install folder (the package root: the CLI's checkout, or the desktop app's resources). */
export const INSTALL_DIR = nodePath.resolve(import.meta.dirname, '..', '..');

/**
 * The install's code and shipped data (app/ holds the built-in sample and teacher): no export is written in them.
 * Other folders of a checkout (a developer's gitignored runs/) stay usable.
 */
const INSTALL_FOLDERS = [
  'app',
  'engine',
  'main',
  'renderer',
  'bin',
  'dist',
  'node_modules',
  'scripts',
  'test',
  'docs',
  '.git',
];

/** Files a run folder keeps; one beside a config.json marks a run folder (as does a config.json of a known kind). */
const RUN_MARKERS = ['metrics.jsonl', 'checkpoints', 'result.json'];
const RUN_KINDS = new Set(['pretrain', 'finetune', 'probe', 'knn']);

/** The folder inside a run folder that holds its exports, the only place in a run folder an export may write. */
export const RUN_EXPORT_FOLDER = 'export';

/** Whether `path` is `root` or lies below it (both absolute and resolved). */
export function isWithin(path: string, root: string): boolean {
  const rel = nodePath.relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !nodePath.isAbsolute(rel));
}

function errCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/**
 * `path` made absolute with every symbolic link resolved. A path that does not exist (yet) is the real path of its
 * nearest existing ancestor joined with the rest, so a link anywhere above a file still to be written is seen.
 */
export function realPathOf(path: string): string {
  let head = nodePath.resolve(path);
  const rest: string[] = [];
  for (;;) {
    try {
      return nodePath.join(fs.realpathSync(head), ...rest);
    } catch (e) {
      if (errCode(e) !== 'ENOENT' && errCode(e) !== 'ENOTDIR') throw e;
      const parent = nodePath.dirname(head);
      if (parent === head) throw e;
      rest.unshift(nodePath.basename(head));
      head = parent;
    }
  }
}

/** `realPathOf` for a name that a write will replace (rename over it): the folder resolved, the last name kept as is. */
export function realPathOfName(path: string): string {
  const abs = nodePath.resolve(path);
  const parent = nodePath.dirname(abs);
  return parent === abs ? realPathOf(abs) : nodePath.join(realPathOf(parent), nodePath.basename(abs));
}

/**
 * Refuses a path (read: a teacher file) whose real path lies outside every root; the roots are resolved too. Returns
 * the real path, which is what should then be opened (a link changed after the check cannot redirect the read).
 */
export function checkReadPath(path: string, roots: readonly string[], what: string): string {
  const real = realPathOf(path);
  const realRoots = roots.map(realPathOf);
  if (!realRoots.some((r) => isWithin(real, r))) {
    const via = real === nodePath.resolve(path) ? '' : ` (a link to ${real})`;
    throw new Error(
      `${what} ${nodePath.resolve(path)}${via} is outside the registered dataset and run folders`,
    );
  }
  return real;
}

function isFile(path: string): boolean {
  try {
    return fs.statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Whether `dir` is a run folder: a config.json of a run kind, or a config.json beside a run's metrics or checkpoints. */
export function isRunFolder(dir: string): boolean {
  const cfg = nodePath.join(dir, 'config.json');
  if (!isFile(cfg)) return false;
  if (RUN_MARKERS.some((m) => fs.existsSync(nodePath.join(dir, m)))) return true;
  try {
    const kind = (JSON.parse(fs.readFileSync(cfg, 'utf8')) as { kind?: unknown }).kind;
    return typeof kind === 'string' && RUN_KINDS.has(kind);
  } catch {
    return false;
  }
}

/** The innermost run folder at or above `real` (a resolved path), if any. */
function enclosingRun(real: string): string | undefined {
  for (let dir = real; ; dir = nodePath.dirname(dir)) {
    if (isRunFolder(dir)) return dir;
    if (nodePath.dirname(dir) === dir) return undefined;
  }
}

export interface ExportTargetOptions {
  /** The run being exported. */
  readonly runDir: string;
  /** The export is a folder written into (tfjs: model.json and weights.bin), not one file put in place. */
  readonly folder: boolean;
  /** Replace existing export files. */
  readonly overwrite?: boolean;
  /** `path` is the run's default export path, which a re-export of the run replaces without `overwrite`. */
  readonly isDefault?: boolean;
  /** When given (digpt serve), the target must lie inside one of these folders. */
  readonly within?: readonly string[];
  /** Folders no export writes into (registered datasets), except inside a run's export folder or `within`. */
  readonly notWithin?: readonly string[];
}

/** An export would replace an existing file: refused unless asked (a CLI may reword the message with its flag). */
export class ExportExistsError extends Error {
  override name = 'ExportExistsError';
  constructor(readonly path: string) {
    super(
      `export path ${path} already exists; export with overwrite (digpt export --overwrite) to replace it`,
    );
  }
}

/** The files an export puts at `target`: the file itself, or a tfjs folder's two files. */
export function exportFiles(target: string, folder: boolean): string[] {
  return folder ? [nodePath.join(target, 'weights.bin'), nodePath.join(target, 'model.json')] : [target];
}

/** Why the resolved `real` may not be written, or null. `shown` is the path as the user gave it. */
function targetProblem(real: string, shown: string, o: ExportTargetOptions): string | null {
  const install = realPathOf(INSTALL_DIR);
  for (const f of INSTALL_FOLDERS) {
    const dir = nodePath.join(install, f);
    if (isWithin(real, dir))
      return `${shown} is inside the workbench's install folder ${dir} (its code, built-in sample and teacher)`;
  }
  if (nodePath.dirname(real) === install && fs.existsSync(real))
    return `${shown} is one of the workbench's own files in its install folder ${install}`;

  const run = enclosingRun(real);
  const runExports = run === undefined ? undefined : nodePath.join(run, RUN_EXPORT_FOLDER);
  // a tfjs export may be the export folder itself; a file may not take its name
  const inRunExports =
    runExports !== undefined && isWithin(real, runExports) && (o.folder || real !== runExports);
  if (run !== undefined && !inRunExports) {
    return (
      `${shown} is inside the run folder ${run}, whose config.json, metrics.jsonl and checkpoints are its own; ` +
      `an export goes in its ${RUN_EXPORT_FOLDER}/ folder or outside the run`
    );
  }

  const within = o.within?.map(realPathOf);
  const inWithin = within?.some((w) => isWithin(real, w)) ?? false;
  if (within && !inWithin) return `${shown} is outside the export folders (${within.join(', ')})`;
  for (const d of o.notWithin?.map(realPathOf) ?? []) {
    if (!inRunExports && !inWithin && isWithin(real, d))
      return `${shown} is inside the dataset folder ${d}; a dataset folder is read, never written`;
  }
  return null;
}

/**
 * The one rule for where an export is written. The target is resolved first (the real path of its folder; a tfjs
 * folder's own links are followed, as its files are written inside it), then refused when it lies
 * - in the install's code and data (app/, engine/, ...: the built-in sample and teacher), or is a file of its root;
 * - in a run folder anywhere but that run's export/ folder (never a run's config.json, metrics.jsonl, checkpoints/);
 * - outside `within`, when given (digpt serve: the run's export/ folder and the workspace's exports/);
 * - in a `notWithin` folder (a registered dataset), unless inside a run's export/ folder or `within`;
 * and when a file it would write exists, unless `overwrite` or the run's default path. Returns the resolved path.
 */
export function checkExportTarget(path: string, o: ExportTargetOptions): string {
  const shown = nodePath.resolve(path);
  const real = o.folder ? realPathOf(path) : realPathOfName(path);
  const problem = targetProblem(real, shown, o);
  if (problem) throw new Error(`export path ${problem}`);
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(real);
  } catch {
    st = undefined;
  }
  if (st && o.folder && !st.isDirectory())
    throw new Error(`export path ${shown} exists and is not a folder (a tfjs export is a folder)`);
  if (st && !o.folder && !st.isFile() && !st.isSymbolicLink())
    throw new Error(`export path ${shown} exists and is not a regular file`);
  if (!o.overwrite && !o.isDefault) {
    const existing = exportFiles(real, o.folder).find((f) => {
      try {
        fs.lstatSync(f);
        return true;
      } catch {
        return false;
      }
    });
    if (existing !== undefined) throw new ExportExistsError(existing);
  }
  return real;
}

/** Where an export may go, beyond the rule every export follows (checkExportTarget). */
export interface ExportOptions {
  /** Replace existing export files. Without it an existing file is refused, except at the run's default path. */
  readonly overwrite?: boolean;
  /** The target must lie inside one of these folders (digpt serve: the run's export/ and the workspace's exports/). */
  readonly within?: readonly string[];
  /** Folders never written (registered datasets), except inside a run's export/ folder or `within`. */
  readonly notWithin?: readonly string[];
}

/** The run's own export path of a format: RUN_DIR/export/<format>.safetensors, or the folder RUN_DIR/export/tfjs. */
export function defaultExportPath(runDir: string, format: CheckpointFormat): string {
  return nodePath.join(runDir, RUN_EXPORT_FOLDER, format === 'tfjs' ? 'tfjs' : `${format}.safetensors`);
}

/**
 * Where an export of `runDir` to `out` (default: its own export path) is written, by checkExportTarget's rule, and
 * whether existing files there are replaced; throws naming the path and the rule it breaks. Host and job both call it.
 */
export function resolveExportTarget(
  runDir: string,
  format: CheckpointFormat,
  out: string | undefined,
  opts: ExportOptions = {},
): { target: string; replace: boolean } {
  const dflt = defaultExportPath(runDir, format);
  const isDefault = out === undefined || nodePath.resolve(out) === nodePath.resolve(dflt);
  const target = checkExportTarget(out ?? dflt, {
    runDir,
    folder: format === 'tfjs',
    isDefault,
    ...(opts.overwrite !== undefined ? { overwrite: opts.overwrite } : {}),
    ...(opts.within !== undefined ? { within: opts.within } : {}),
    ...(opts.notWithin !== undefined ? { notWithin: opts.notWithin } : {}),
  });
  return { target, replace: opts.overwrite === true || isDefault };
}

/** Writes bytes to a new file (never through a name that exists) and fsyncs them. */
export function writeNewFile(path: string, data: Uint8Array): void {
  const fd = fs.openSync(path, 'wx');
  try {
    for (let done = 0; done < data.byteLength;) done += fs.writeSync(fd, data, done);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Puts one export file at `target` (a path checkExportTarget returned): `write(tmp)` writes a temporary file beside
 * it, which is then renamed over the target (replace) or hard-linked to it (no replace: link() fails on an existing
 * name, so a file that appeared since the check is not overwritten either). A crash or failure never leaves a
 * half-written file at `target`, and a link planted at the name is replaced, never followed.
 */
export function putExportFile(
  target: string,
  how: { readonly replace: boolean },
  write: (tmp: string) => void,
): void {
  const tmp = nodePath.join(
    nodePath.dirname(target),
    `.${nodePath.basename(target)}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`,
  );
  try {
    write(tmp);
    if (how.replace) {
      fs.renameSync(tmp, target);
      return;
    }
    try {
      fs.linkSync(tmp, target);
    } catch (e) {
      const code = errCode(e);
      if (code === 'EEXIST') throw new ExportExistsError(target);
      // a filesystem without hard links (FAT, some network mounts): the check before the write has to do
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
      if (fs.existsSync(target)) throw new ExportExistsError(target);
      fs.renameSync(tmp, target);
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}
