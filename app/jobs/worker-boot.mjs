// Boots the engine side of a job (a worker thread, or a child process on tensorflow) from TypeScript sources: Node 20 does not pass --import hooks to workers, and the child starts without them, so tsx is registered here.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
