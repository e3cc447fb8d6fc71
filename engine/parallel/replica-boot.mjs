// Boots a replica thread from TypeScript sources: Node 20 does not pass --import hooks to workers, so tsx is registered here.
import { register } from 'tsx/esm/api';

register();
await import('./replica.ts');
