// The window's preload (sandboxed, bundled to one CommonJS file by scripts/build-main.mjs): exposes window.digpt.
import { contextBridge, ipcRenderer, webUtils } from 'electron';
import { buildDigptApi } from './preload-api.js';

contextBridge.exposeInMainWorld(
  'digpt',
  buildDigptApi(ipcRenderer, (file) => webUtils.getPathForFile(file)),
);
