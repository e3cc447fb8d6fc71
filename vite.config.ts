// Vite build of the Svelte renderer: renderer/ -> dist/renderer, with relative asset URLs ('./') so the same
// build loads from file:// in Electron and from http:// under `digpt serve`.
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('./renderer', import.meta.url));

export default defineConfig({
  root,
  base: './',
  plugins: [svelte({ configFile: false })],
  build: {
    outDir: fileURLToPath(new URL('./dist/renderer', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // No inline data: modules: the page's CSP allows scripts from 'self' only.
    assetsInlineLimit: 0,
  },
  server: {
    // `npm run dev:renderer` next to `digpt serve` (port 8765): open http://localhost:5173/?token=...
    proxy: { '/api': { target: 'ws://127.0.0.1:8765', ws: true } },
  },
});
