// `node --import register.mjs dist/main/index.js`: runs the bundled main process with the stand-in Electron.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
