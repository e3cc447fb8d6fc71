// A bounded pool for file work: sharp decodes on libuv's threads, so a few tasks at once keep both busy.
import { availableParallelism } from 'node:os';

export function defaultConcurrency(): number {
  return Math.min(8, Math.max(2, availableParallelism()));
}

/** Runs `fn` over 0..n-1 with at most `limit` pending at once; `fn` must not throw (it records its own failures). */
export async function forEachLimit(
  n: number,
  limit: number,
  fn: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, n)) }, worker));
}
