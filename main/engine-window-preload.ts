// The engine window's preload (bundled to dist/main/engine-preload.cjs): exposes nothing. It hands the page the one
// MessagePort main posts (main/engine-window.ts), as Electron's MessagePorts guide does for a context-isolated page.
import { ipcRenderer } from 'electron';
import { ENGINE_PORT_CHANNEL } from './engine-window-wire.js';

const page = globalThis as unknown as {
  postMessage(message: unknown, origin: string, transfer: unknown[]): void;
};
ipcRenderer.once(ENGINE_PORT_CHANNEL, (event) => page.postMessage(ENGINE_PORT_CHANNEL, '*', event.ports));
