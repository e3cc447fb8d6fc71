// Where the workbench keeps runs and the dataset registry: one default workspace for the CLI, `digpt serve` and the desktop app.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';

/** What the choice depends on; the real environment by default (tests pass their own). */
export interface WorkspaceFacts {
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly home?: string;
  readonly cwd?: string;
  readonly isDir?: (path: string) => boolean;
}

function isDir(path: string): boolean {
  try {
    return fs.statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * `$DIGPT_WORKSPACE` when set (a relative path is taken from the working directory). Otherwise the first of
 * `~/Documents/D-iGPT Workbench` (the desktop app's folder) and `~/digpt-workbench` (what `digpt serve` used) that
 * already exists, so that nobody's runs move; for a new user `~/Documents/D-iGPT Workbench` where a Documents folder
 * exists (a desktop, where people look for their files), else `~/digpt-workbench` (a server or a container).
 * The three surfaces call this same function, so each shows the others' runs.
 */
export function defaultWorkspace(f: WorkspaceFacts = {}): string {
  const env = f.env ?? process.env;
  const cwd = f.cwd ?? process.cwd();
  const set = env['DIGPT_WORKSPACE'];
  if (set !== undefined && set !== '') return nodePath.resolve(cwd, set);
  const home = f.home ?? os.homedir();
  const dirExists = f.isDir ?? isDir;
  const documents = nodePath.join(home, 'Documents');
  const inDocuments = nodePath.join(documents, 'D-iGPT Workbench');
  const inHome = nodePath.join(home, 'digpt-workbench');
  for (const candidate of [inDocuments, inHome]) if (dirExists(candidate)) return candidate;
  return dirExists(documents) ? inDocuments : inHome;
}

/** Where decoded images are cached: DIGPT_CACHE, else ~/.cache/digpt-workbench. */
export function cacheDir(): string {
  return process.env['DIGPT_CACHE'] ?? nodePath.join(os.homedir(), '.cache', 'digpt-workbench');
}

/** The folder of run folders in a workspace. */
export function runsDir(workspace: string): string {
  return nodePath.join(workspace, 'runs');
}

/** `YYYYMMDD-HHMMSS` in UTC, as the workbench names the runs it launches. */
export function runStamp(now: Date = new Date()): string {
  return now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
}

/** A run folder under `root` that does not exist yet: `<kind>-<stamp>`, then `-2`, `-3`, ... within one second. */
export function newRunDir(root: string, kind: string, now: Date = new Date()): string {
  const base = nodePath.join(root, `${kind}-${runStamp(now)}`);
  let dir = base;
  for (let i = 2; fs.existsSync(dir); i++) dir = `${base}-${i}`;
  return dir;
}
