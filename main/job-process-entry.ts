// The entry of a job's utility process (bundled to dist/main/job-process.js; main/job-process.ts starts it): lays a
// forked child's channel over process.parentPort (main/fork-channel.ts), then loads the bundled job worker beside it.
import { installForkChannel } from './fork-channel.js';

const port = process.parentPort;
const channel = installForkChannel(process, port);
try {
  // by URL, so the worker stays its own bundle (one file for threads and processes) and runs after the channel exists
  await import(new URL('./worker.js', import.meta.url).href);
  // the worker listens now (it does so as it loads): hand it what the host sent meanwhile, its 'start' first
  channel.start();
} catch (e) {
  // what app/worker/boot.mjs says for a child whose worker fails to load, before it exits
  const message = `engine process crashed: ${e instanceof Error ? e.message : String(e)}`;
  port.postMessage({ seq: -1, type: 'error', name: e instanceof Error ? e.name : 'Error', message });
  // the message leaves through Electron's IPC thread; give it a moment before the process goes
  setTimeout(() => process.exit(1), 500);
}
