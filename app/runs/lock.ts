// One writer per run folder: RUN_DIR/.lock names its holder (pid, host, start, command); a dead holder's is taken over.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { threadId } from 'node:worker_threads';

export const LOCK_FILE = '.lock';

/** What RUN_DIR/.lock holds. */
export interface LockInfo {
  readonly pid: number;
  readonly host: string;
  /** When the holder took the lock (ISO time). */
  readonly started: string;
  /** What the holder runs (its command line and job). */
  readonly command: string;
  /** The holder's worker thread (0: the main thread); jobs of `digpt serve` share one pid. */
  readonly thread: number;
  /** Tells this holder's lock from a later one, so a release never removes someone else's. */
  readonly token: string;
}

/** Another live process (or another job of this one) is writing the run. */
export class RunLockedError extends Error {
  readonly holder: LockInfo | undefined;

  constructor(message: string, holder?: LockInfo) {
    super(message);
    this.name = 'RunLockedError';
    this.holder = holder;
  }
}

export function lockPath(dir: string): string {
  return nodePath.join(dir, LOCK_FILE);
}

function readLock(path: string): { text: string; info: LockInfo | undefined } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const j = JSON.parse(text) as Partial<LockInfo>;
    const ok =
      typeof j.pid === 'number' &&
      typeof j.host === 'string' &&
      typeof j.started === 'string' &&
      typeof j.token === 'string';
    return {
      text,
      info: ok ? ({ command: '', thread: 0, ...j, pid: j.pid as number } as LockInfo) : undefined,
    };
  } catch {
    return { text, info: undefined };
  }
}

/** Whether process `pid` of this host is alive: kill(pid, 0) probes without sending (EPERM: alive, not ours). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function describe(h: LockInfo): string {
  return `pid ${h.pid} on ${h.host} since ${h.started}${h.command ? ` (${h.command})` : ''}`;
}

/**
 * Creates `path` holding `text` only if it does not exist, with its whole content at once: the text goes to a
 * private file that is then hard-linked to `path` (link fails when `path` exists), so no reader ever sees a
 * half-written lock. Filesystems without hard links fall back to an exclusive create ('wx').
 */
function createExclusive(path: string, text: string): boolean {
  const tmp = `${path}.${process.pid}-${threadId}-${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, text, { flag: 'wx' });
  try {
    fs.linkSync(tmp, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw e;
    try {
      fs.writeFileSync(path, text, { flag: 'wx' });
      return true;
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e2;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * Removes the lock at `path` if it still holds exactly `text` (the stale one we looked at): it is renamed aside
 * first, which only one of several racing processes can do, and put back if it turns out to be a newer lock.
 */
function removeIfUnchanged(path: string, text: string): void {
  const aside = `${path}.stale-${process.pid}-${threadId}-${randomBytes(4).toString('hex')}`;
  try {
    fs.renameSync(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else removed it
    throw e;
  }
  if (fs.readFileSync(aside, 'utf8') !== text) {
    // a live lock taken between our look and the rename: give it back (fails only if yet another one exists)
    try {
      fs.linkSync(aside, path);
    } catch {
      // that newer holder's lock stands
    }
  }
  fs.rmSync(aside, { force: true });
}

/** A malformed lock younger than this may be one being created on a filesystem without hard links. */
const MALFORMED_GRACE_MS = 5_000;

/** The lock of one run folder, held by this process (and thread) until released. */
export class RunLock {
  private held = true;
  private readonly onExit = (): void => this.release();

  private constructor(
    readonly dir: string,
    readonly info: LockInfo,
  ) {
    // a job that ends with process.exit (or its thread's end) still lets go
    process.once('exit', this.onExit);
  }

  /**
   * Takes RUN_DIR/.lock, or throws RunLockedError naming the live holder. A lock left by a process of this host that
   * no longer runs is taken over; `onWarn` says so, naming the old holder.
   */
  static acquire(dir: string, o: { command?: string; onWarn?: (text: string) => void } = {}): RunLock {
    const path = lockPath(dir);
    if (!fs.existsSync(dir)) throw new Error(`${dir}: no such run folder`);
    const info: LockInfo = {
      pid: process.pid,
      host: os.hostname(),
      started: new Date().toISOString(),
      command: o.command ?? process.argv.slice(1).join(' '),
      thread: threadId,
      token: randomBytes(8).toString('hex'),
    };
    const text = `${JSON.stringify(info, null, 1)}\n`;
    for (let attempt = 0; attempt < 5; attempt++) {
      if (createExclusive(path, text)) return new RunLock(dir, info);
      const seen = readLock(path);
      if (!seen) continue; // released meanwhile
      const h = seen.info;
      if (!h) {
        const age = Date.now() - fs.statSync(path).mtimeMs;
        if (age < MALFORMED_GRACE_MS)
          throw new RunLockedError(`run ${dir} is being locked by another process right now (${path})`);
        o.onWarn?.(
          `took over the lock of run ${dir}: ${path} was not a readable lock (${seen.text.length} bytes)`,
        );
        removeIfUnchanged(path, seen.text);
        continue;
      }
      if (h.host !== os.hostname())
        throw new RunLockedError(
          `run ${dir} is being written by ${describe(h)}; this is ${os.hostname()}, so whether that process still ` +
            `runs cannot be checked from here (delete ${path} if it does not)`,
          h,
        );
      if (alive(h.pid)) {
        const self = h.pid === process.pid ? '; it is another job of this process' : '';
        throw new RunLockedError(
          `run ${dir} is being written by ${describe(h)}${self}; wait for it to finish or stop it ` +
            `(if no digpt process runs it, delete ${path})`,
          h,
        );
      }
      o.onWarn?.(`took over the lock of run ${dir} from ${describe(h)}, which no longer runs`);
      removeIfUnchanged(path, seen.text);
    }
    throw new RunLockedError(`run ${dir}: could not take ${path} (other processes keep taking it)`);
  }

  get path(): string {
    return lockPath(this.dir);
  }

  /** Lets go of the lock (idempotent); a lock that is no longer ours (taken over meanwhile) is left alone. */
  release(): void {
    if (!this.held) return;
    this.held = false;
    process.off('exit', this.onExit);
    const seen = readLock(this.path);
    if (seen?.info?.token === this.info.token) fs.rmSync(this.path, { force: true });
  }
}

/**
 * Removes a lock that a job left behind when it was ended without cleaning up (a worker thread terminated or killed
 * by an out-of-memory abort keeps this process's pid alive, so the lock would not look stale). Only the job host may
 * call it, once that job is gone: `pid` is the job's process (this one for a worker thread).
 */
export function clearLockOfEndedJob(dir: string, pid: number = process.pid): boolean {
  const seen = readLock(lockPath(dir));
  if (seen?.info?.pid !== pid || seen.info.host !== os.hostname()) return false;
  fs.rmSync(lockPath(dir), { force: true });
  return true;
}
