// The engine page (main/engine-window.ts's handler) in a real Chromium, served over loopback HTTP as it is over
// app://engine/: under its CSP the page takes the port its preload would post, starts its worker and hands it the
// port (init first, navigator.gpu in the worker); and the bundled worker script without Node fails into the title,
// where main reads it. Electron itself cannot run here; this is the Chromium half of the engine window.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { createEnginePageHandler } from '../../main/engine-window.js';
import { ENGINE_ERROR_TITLE, ENGINE_HOST, ENGINE_PORT_CHANNEL } from '../../main/engine-window-wire.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const root = fileURLToPath(new URL('../..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'digpt-engine-page-'));

/** A worker that echoes what its port receives, with what it knows of itself. */
const ECHO_WORKER = `
self.addEventListener('message', (e) => {
  const port = e.ports[0];
  port.onmessage = (m) => port.postMessage({ first: e.data, echo: m.data, gpu: typeof navigator.gpu });
});
`;

async function serve(workerScript: string): Promise<{ server: Server; url: string }> {
  const handler = createEnginePageHandler(workerScript);
  const server = createServer((req, res) => {
    void (async () => {
      const r = await handler({ url: `app://${ENGINE_HOST}${req.url ?? '/'}`, method: req.method ?? 'GET' });
      res.writeHead(r.status, Object.fromEntries(r.headers));
      res.end(Buffer.from(await r.arrayBuffer()));
    })();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${port}/index.html` };
}

/** Loads the page, then does what the preload does: posts one port with ENGINE_PORT_CHANNEL, and sends init on it. */
async function handOver(browser: Browser, url: string): Promise<{ answer: unknown; title: string }> {
  const page = await browser.newPage();
  try {
    await page.goto(url);
    // (a string: this project's TypeScript has no DOM types)
    return (await page.evaluate(`(async () => {
      const c = new MessageChannel();
      const answer = new Promise((r) => {
        c.port1.onmessage = (e) => r(e.data);
        setTimeout(() => r('no answer'), 3000);
      });
      window.postMessage(${JSON.stringify(ENGINE_PORT_CHANNEL)}, '*', [c.port2]);
      c.port1.postMessage({ digptEngine: 'init', entry: '/x/engine.cjs', env: {} });
      const a = await answer;
      // the worker's error reaches the title a moment after it happened
      await new Promise((r) => setTimeout(r, 300));
      return { answer: a, title: document.title };
    })()`)) as { answer: unknown; title: string };
  } finally {
    await page.close();
  }
}

describe('the engine page in Chromium', { skip: !existsSync(CHROMIUM) && `${CHROMIUM} is missing` }, () => {
  let browser: Browser;
  const outdir = join(root, 'dist', `.test-engine-page-${process.pid}`);
  before(async () => {
    mkdirSync(join(root, 'dist'), { recursive: true });
    const r = spawnSync(process.execPath, ['scripts/build-main.mjs', '--outdir', outdir], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    writeFileSync(join(tmp, 'echo-worker.js'), ECHO_WORKER);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });
  after(async () => {
    await browser?.close();
    rmSync(outdir, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  it('starts its worker under its CSP and hands it the port: the worker reads init first', async () => {
    const { server, url } = await serve(join(tmp, 'echo-worker.js'));
    try {
      const { answer, title } = await handOver(browser, url);
      assert.deepEqual(answer, {
        first: ENGINE_PORT_CHANNEL,
        echo: { digptEngine: 'init', entry: '/x/engine.cjs', env: {} },
        // Chromium's WebGPU in a dedicated worker (whether it gives an adapter is the GPU's business)
        gpu: 'object',
      });
      assert.equal(title, 'D-iGPT engine');
    } finally {
      server.close();
    }
  });

  it("the bundled worker script without Node (a plain Chromium worker) fails into the page's title", async () => {
    const { server, url } = await serve(join(outdir, 'engine-worker.js'));
    try {
      const { answer, title } = await handOver(browser, url);
      assert.equal(answer, 'no answer');
      assert.ok(title.startsWith(ENGINE_ERROR_TITLE), title);
      assert.match(title, /process is not defined/);
    } finally {
      server.close();
    }
  });
});
