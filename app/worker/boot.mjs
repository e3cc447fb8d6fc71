// Boots the engine side of a job (a worker thread, or a child process on tensorflow) from TypeScript sources: Node 20 does not pass --import hooks to workers, and the child starts without them, so tsx is registered here.
import { isMainThread } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
try {
  await import('./entry.ts');
} catch (e) {
  // a thread's failure reaches the host as the Worker's 'error'; a child says it before it exits
  if (isMainThread && process.send) {
    const message = `engine process crashed: ${e instanceof Error ? e.message : String(e)}`;
    process.send({ seq: -1, type: 'error', name: e instanceof Error ? e.name : 'Error', message }, () =>
      process.exit(1),
    );
  } else throw e;
}
