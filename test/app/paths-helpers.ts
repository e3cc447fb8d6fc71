// Helpers of the special-file and path tests: real FIFOs and Unix sockets, a guard that turns a hang into a failure,
// and a small real run folder to export.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import * as net from 'node:net';
import { PretrainRun } from '../../app/worker/pretrain-run.js';
import { getPreset } from '../../engine/config.js';
import { Rng } from '../../engine/rng.js';

/** A real FIFO at `path` (mkfifo). */
export function mkfifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

/** A listening Unix socket at `path`; close it when done. */
export async function unixSocket(path: string): Promise<net.Server> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, resolve);
  });
  return server;
}

/** Opens each FIFO for writing and closes it: an open() or read() waiting on it returns (with no data). */
function wakeFifos(fifos: readonly string[]): void {
  for (const f of fifos) {
    try {
      closeSync(openSync(f, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // no reader waits on it (ENXIO), or it is gone
    }
  }
}

/**
 * Awaits `work`, failing if it has not settled after `ms`. A read blocked on a FIFO holds one of libuv's threads
 * and would block the test process's exit too, so on a hang the FIFOs are woken before the failure is reported.
 * Not a speed check: the limit is far above the time the work takes.
 */
export async function failIfHangs<T>(
  work: Promise<T>,
  fifos: readonly string[],
  what: string,
  ms = 30_000,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      wakeFifos(fifos);
      reject(new Error(`${what} hung for ${ms / 1000} s (blocked on a FIFO, socket or device?)`));
    }, ms);
  });
  try {
    return await Promise.race([work, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A one-step digpt-micro-32 run folder with its checkpoint, trained on random pixels (what an export holds does not
 * matter to the path tests). Needs the tfjs backend (initBackend) in this process.
 */
export async function oneStepRun(dir: string): Promise<void> {
  const rng = new Rng(1);
  const side = 36;
  const pixels = new Uint8Array(6 * side * side * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = rng.int(256);
  const run = PretrainRun.create(
    dir,
    {
      data: 'synthetic',
      preset: 'digpt-micro-32',
      model: getPreset('digpt-micro-32').model,
      teacher: 'pixels',
      objective: 'digpt',
      steps: 1,
      batch: 3,
      accum: 1,
      seed: 5,
      blr: 1.5e-3,
      min_lr: 0,
      warmup_steps: 1,
      weight_decay: 0.05,
      checkpoint_every: 1,
    },
    { count: 6, side, pixels },
  );
  try {
    await run.runSteps(1);
  } finally {
    run.dispose();
  }
}
