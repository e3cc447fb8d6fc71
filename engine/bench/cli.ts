// `npm run bench [-- FLAGS]`: see main.ts for the flags.
import { benchMain } from './main.js';

process.exitCode = await benchMain(process.argv.slice(2));
