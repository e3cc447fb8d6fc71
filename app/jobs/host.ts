// Hosts engine jobs in worker threads for the CLI, `digpt serve` and the Electron main process alike.
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { HostMessage, JobSpec, WorkerEvent } from './protocol.js';

/** Events of one job: every WorkerEvent, plus `exit` when the thread is gone (crashed threads report an error first). */
export interface JobEvents {
  event: [WorkerEvent];
  exit: [{ ok: boolean; error?: string }];
}

/** A running job: its events and its controls. */
export class JobHandle extends EventEmitter<JobEvents> {
  private seq = 0;
  private finished = false;
  private failure: string | undefined;

  constructor(private readonly worker: Worker) {
    super();
    worker.on('message', (e: WorkerEvent) => {
      if (e.type === 'error') this.failure = e.message;
      this.emit('event', e);
    });
    // a crashed worker (uncaught exception, out of memory) fails its job; the host keeps running
    worker.on('error', (err) => {
      this.failure = `engine worker crashed: ${err.message}`;
      this.emit('event', { seq: -1, type: 'error', name: err.name, message: this.failure });
    });
    worker.on('exit', (code) => {
      this.finished = true;
      if (code !== 0 && !this.failure) {
        this.failure = `engine worker exited with code ${code}`;
        this.emit('event', { seq: -1, type: 'error', name: 'WorkerExit', message: this.failure });
      }
      this.emit('exit', this.failure ? { ok: false, error: this.failure } : { ok: true });
    });
  }

  /** Sends a message, numbered. */
  send(m: HostMessage extends infer M ? (M extends { seq: number } ? Omit<M, 'seq'> : never) : never): void {
    if (!this.finished) this.worker.postMessage({ ...m, seq: this.seq++ });
  }

  pause(): void {
    this.send({ type: 'pause' });
  }

  continue(): void {
    this.send({ type: 'continue' });
  }

  /** Asks the job to stop after its current step and write a checkpoint. */
  stop(): void {
    this.send({ type: 'stop' });
  }

  /** Ends the thread at once (no checkpoint). */
  async kill(): Promise<void> {
    await this.worker.terminate();
  }

  /** Resolves when the thread has exited. */
  done(): Promise<{ ok: boolean; error?: string }> {
    if (this.finished)
      return Promise.resolve(this.failure ? { ok: false, error: this.failure } : { ok: true });
    return new Promise((r) => this.once('exit', r));
  }
}

/** Where the worker's code is and how to load it: TypeScript through tsx in development and tests. */
function workerUrl(): { url: URL; execArgv: string[] } {
  return { url: new URL('./worker-boot.mjs', import.meta.url), execArgv: [] };
}

/** Starts `job` in a new worker thread. */
export function startJob(job: JobSpec, env: Record<string, string | undefined> = process.env): JobHandle {
  const { url, execArgv } = workerUrl();
  const worker = new Worker(url, { execArgv, env });
  const handle = new JobHandle(worker);
  handle.send({ type: 'start', job });
  return handle;
}
