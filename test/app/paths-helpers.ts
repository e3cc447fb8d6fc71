// Helpers of the special-file and path tests: real FIFOs and Unix sockets, and a guard that turns a hang into a failure.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import * as net from 'node:net';

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
