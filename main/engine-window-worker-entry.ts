// The engine window's worker script (bundled to dist/main/engine-worker.js, served as app://engine/engine-worker.js):
// a Chromium dedicated Worker with Node (nodeIntegrationInWorker). It runs main/engine-window-worker.ts on the real
// globals, and requires the job engine as CommonJS (dist/main/engine.cjs): Chromium's own ESM loader, which import()
// uses in a renderer, resolves neither npm packages nor node: modules.
import {
  nodeStyleTimers,
  startEngineWorker,
  type WorkerProcess,
  type WorkerScope,
} from './engine-window-worker.js';

declare const require: (id: string) => unknown;

const scope = globalThis as unknown as WorkerScope & {
  setTimeout(cb: () => void, ms?: number): unknown;
  clearTimeout(id: unknown): void;
};
// the engine's Node code unrefs its timers (app/worker/entry.ts): Blink's return numbers
const timers = nodeStyleTimers({
  setTimeout: scope.setTimeout.bind(scope),
  clearTimeout: scope.clearTimeout.bind(scope),
});
if (timers) Object.assign(scope, timers);
// the fork channel calls back with setImmediate (Node's global, which Electron gives its renderers): should a worker
// lack it, a Blink task does the same
const immediate = scope as unknown as { setImmediate?: (cb: () => void) => unknown };
immediate.setImmediate ??= (cb) => scope.setTimeout(cb, 0);
startEngineWorker(scope, process as unknown as WorkerProcess, (entry) => require(entry));
