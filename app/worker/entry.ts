// The engine's side of a job: starts the backend, runs one job, streams events to the host (a worker thread or a child process).
import { parentPort } from 'node:worker_threads';
import { describeBackend, initBackend, type BackendReport } from '../../engine/backend.js';
import type { BackendInfo } from '../api/contract.js';
import type { HostMessage, WorkerEvent } from '../jobs/protocol.js';
import { runJob, type JobControl, type JobEvent } from './run-job.js';

/** The way back to the host: a worker thread's port, or a child process's IPC channel. */
interface HostLink {
  post(e: WorkerEvent): void;
  onMessage(cb: (m: HostMessage) => void): void;
  /** After the last event: lets the thread or process end. */
  close(): void;
}

function threadLink(port: NonNullable<typeof parentPort>): HostLink {
  return {
    post(msg) {
      // large arrays travel as transferred buffers
      const transfer: ArrayBuffer[] = [];
      if (msg.type === 'step') {
        if (msg.order) transfer.push(msg.order.buffer as ArrayBuffer);
        if (msg.clusterError) transfer.push(msg.clusterError.buffer as ArrayBuffer);
        if (msg.samples) transfer.push(msg.samples.pixels.buffer as ArrayBuffer);
      }
      port.postMessage(msg, transfer);
    },
    onMessage: (cb) => port.on('message', cb),
    close: () => port.close(),
  };
}

function processLink(): HostLink {
  const send = process.send?.bind(process);
  if (!send) throw new Error('app/jobs/worker.ts must run in a worker thread or a forked child process');
  let pending = 0;
  let closing = false;
  const finish = (): void => {
    if (!closing || pending > 0) return;
    process.disconnect();
    // nothing should hold the process after its job; if something does, the job has ended all the same
    setTimeout(() => process.exit(0), 2000).unref();
  };
  // the host decides when a job stops: Ctrl-C reaches the whole process group, but only the host's 'stop' counts
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  // a host that is gone cannot receive events: end at once, as a killed thread would
  process.on('disconnect', () => {
    if (!closing) process.exit(1);
  });
  process.on('uncaughtException', (err) => {
    pending++;
    send({ seq: -1, type: 'error', name: err.name, message: `engine process crashed: ${err.message}` }, () =>
      process.exit(1),
    );
  });
  return {
    post(msg) {
      pending++;
      // the structured clone ('advanced' serialization) keeps typed arrays
      send(msg, undefined, {}, () => {
        pending--;
        finish();
      });
    },
    onMessage: (cb) => process.on('message', (m) => cb(m as HostMessage)),
    close() {
      closing = true;
      finish();
    },
  };
}

const link = parentPort ? threadLink(parentPort) : processLink();

/** The backend as the host reports it (the contract's BackendInfo): the report's facts, and the line for people. */
function backendInfo(r: BackendReport): BackendInfo {
  return {
    name: r.name,
    tfName: r.tfName,
    skipped: r.skipped.map((s) => ({ name: s.name, reason: s.reason })),
    forced: r.forced,
    ...(r.gemm ? { gemm: { kind: r.gemm.kind, why: r.gemm.why } } : {}),
    ...(r.tf32 !== undefined ? { tf32: r.tf32 } : {}),
    ...(r.adapter ? { adapter: { ...r.adapter } } : {}),
    text: describeBackend(r),
  };
}

let seq = 0;
function emit(e: JobEvent): void {
  link.post({ ...e, seq: seq++ } as WorkerEvent);
}

const control: JobControl = { paused: false, stopping: false };

link.onMessage((m) => {
  switch (m.type) {
    case 'start':
      void (async () => {
        try {
          emit({ type: 'backend', backend: backendInfo(await initBackend()) });
          await runJob(m.job, emit, control);
        } catch (e) {
          emit({
            type: 'error',
            name: e instanceof Error ? e.name : 'Error',
            message: e instanceof Error ? e.message : String(e),
          });
        } finally {
          link.close();
        }
      })();
      break;
    case 'pause':
      control.paused = true;
      emit({ type: 'paused' });
      break;
    case 'continue':
      control.paused = false;
      emit({ type: 'continued' });
      break;
    case 'stop':
      control.stopping = true;
      control.paused = false;
      break;
  }
});
