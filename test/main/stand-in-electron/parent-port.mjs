// Preloaded into a stand-in utility process (electron.mjs forks it): Electron's process.parentPort, laid over the
// forked child's IPC channel. Parent messages arrive wrapped as { fromParent }, so that the fork channel the job
// process entry lays back over this port (main/fork-channel.ts) is what delivers them to the worker, as in Electron.
import { EventEmitter } from 'node:events';

const send = process.send.bind(process);
const port = new EventEmitter();
port.postMessage = (message) => send(message);
// as Electron's port, it delivers once someone listens; what came before waits
const waiting = [];
port.on('newListener', (event) => {
  if (event === 'message')
    setImmediate(() => waiting.splice(0).forEach((data) => port.emit('message', { data })));
});
process.on('message', (m) => {
  if (m === null || typeof m !== 'object' || !('fromParent' in m)) return;
  if (port.listenerCount('message') > 0) port.emit('message', { data: m.fromParent });
  else waiting.push(m.fromParent);
});
// the IPC channel stays referenced: like Electron's utility process (electron#47228), the child lives until it exits
process.parentPort = port;
