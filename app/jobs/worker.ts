// The engine's worker thread: starts the backend, runs one job, streams events to the host.
import { parentPort } from 'node:worker_threads';
import { describeBackend, initBackend } from '../../engine/backend.js';
import type { HostMessage, WorkerEvent } from './protocol.js';
import { runJob, type JobControl, type JobEvent } from './run-job.js';

const port = parentPort;
if (!port) throw new Error('app/jobs/worker.ts must run in a worker thread');

let seq = 0;
function emit(e: JobEvent): void {
  const msg = { ...e, seq: seq++ } as WorkerEvent;
  // large arrays travel as transferred buffers
  const transfer: ArrayBuffer[] = [];
  if (msg.type === 'step') {
    if (msg.order) transfer.push(msg.order.buffer as ArrayBuffer);
    if (msg.clusterError) transfer.push(msg.clusterError.buffer as ArrayBuffer);
    if (msg.samples) transfer.push(msg.samples.pixels.buffer as ArrayBuffer);
  }
  port?.postMessage(msg, transfer);
}

const control: JobControl = { paused: false, stopping: false };

port.on('message', (m: HostMessage) => {
  switch (m.type) {
    case 'start':
      void (async () => {
        try {
          const report = await initBackend();
          emit({ type: 'backend', name: report.name, text: describeBackend(report) });
          await runJob(m.job, emit, control);
        } catch (e) {
          emit({
            type: 'error',
            name: e instanceof Error ? e.name : 'Error',
            message: e instanceof Error ? e.message : String(e),
          });
        } finally {
          port.close();
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
