// `digpt serve` without a browser: the token, the origin check, requests and live events of a real tiny run.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { serve, type Server } from '../../app/serve.js';

const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-serve-'));
process.env['DIGPT_CACHE'] = nodePath.join(tmp, 'cache');
const staticDir = nodePath.join(tmp, 'ui');
fs.mkdirSync(staticDir);
fs.writeFileSync(nodePath.join(staticDir, 'index.html'), '<!doctype html><title>ui</title>');
let server: Server;

before(async () => {
  server = await serve({ port: 0, workspace: nodePath.join(tmp, 'ws'), staticDir });
});
after(async () => {
  await server.close();
});

interface Msg {
  type: string;
  id?: number;
  name?: string;
  payload?: Record<string, unknown>;
  result?: { ok: boolean; value?: unknown; error?: string };
}

/** A connected API client that records events. */
async function client(query = `?token=${server.token}`, headers: Record<string, string> = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/api${query}`, { headers });
  const events: Msg[] = [];
  const pending = new Map<number, (m: Msg) => void>();
  let next = 1;
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as Msg;
    if (m.type === 'event') events.push(m);
    else if (m.id !== undefined) pending.get(m.id)?.(m);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const request = (name: string, payload: unknown) =>
    new Promise<{ ok: boolean; value?: unknown; error?: string }>((resolve) => {
      const id = next++;
      pending.set(id, (m) => resolve(m.result as { ok: boolean }));
      ws.send(JSON.stringify({ type: 'request', id, name, payload }));
    });
  return { ws, events, request };
}

async function until(pred: () => boolean, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('digpt serve', () => {
  it('binds to loopback and refuses pages and sockets without the token', async () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{48}$/);
    const page = await fetch(`http://127.0.0.1:${server.port}/`);
    assert.equal(page.status, 401);
    // refused at the handshake: the socket never opens
    const refused = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/api?token=wrong`);
      ws.on('error', (e) => resolve(e.message));
      ws.on('open', () => resolve('open'));
    });
    assert.match(refused, /401/);
    const foreign = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/api?token=${server.token}`, {
        headers: { Origin: 'http://evil.example' },
      });
      ws.on('error', (e) => resolve(e.message));
      ws.on('open', () => resolve('open'));
    });
    assert.match(foreign, /403/);
  });

  it('moves the token into a cookie and serves the UI with a CSP', async () => {
    const first = await fetch(server.url, { redirect: 'manual' });
    assert.equal(first.status, 302);
    const cookie = first.headers.get('set-cookie') ?? '';
    assert.match(cookie, /HttpOnly; SameSite=Strict/);
    const page = await fetch(`http://127.0.0.1:${server.port}/`, {
      headers: { cookie: cookie.split(';')[0] as string },
    });
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    const escape = await fetch(`http://127.0.0.1:${server.port}/..%2f..%2fetc%2fpasswd`, {
      headers: { cookie: cookie.split(';')[0] as string },
    });
    assert.ok([403, 404].includes(escape.status));
  });

  it('answers requests, validates them, runs a job with live metrics and a patch-order frame, exports', async () => {
    const c = await client();
    const presets = await c.request('presets.list', {});
    assert.ok(presets.ok && Array.isArray(presets.value) && presets.value.length === 3);
    const bad = await c.request('runs.launch', {
      kind: 'pretrain',
      dataset: 'builtin-sample',
      preset: 'digpt-micro-32',
      teacher: 'pixels',
      objective: 'digpt',
      batch: 0,
      accum: 1,
      blr: 1e-3,
      seed: 0,
    });
    assert.equal(bad.ok, false);
    assert.match(bad.error ?? '', /runs\.launch: batch: /);
    const unknown = await c.request('files.read', { path: '/etc/passwd' });
    assert.deepEqual(unknown, { ok: false, error: "unknown request 'files.read'" });
    const outside = await c.request('runs.launch', {
      kind: 'pretrain',
      dataset: 'builtin-sample',
      preset: 'digpt-micro-32',
      teacher: '/etc/passwd',
      objective: 'digpt',
      steps: 1,
      batch: 4,
      accum: 1,
      blr: 1e-3,
      seed: 0,
    });
    assert.match(
      outside.error ?? '',
      /teacher file \/etc\/passwd is outside the registered dataset and run folders/,
    );
    const list = (await c.request('datasets.list', {})) as {
      ok: boolean;
      value: { id: string; images: number }[];
    };
    assert.equal(list.value[0]?.id, 'builtin-sample');
    assert.equal(list.value[0]?.images, 4000);
    const thumbs = (await c.request('datasets.thumbnails', {
      id: 'builtin-sample',
      split: 'train',
      offset: 0,
      limit: 3,
    })) as {
      value: { total: number; items: { png: string; label: string }[] };
    };
    assert.equal(thumbs.value.items.length, 3);
    assert.match(thumbs.value.items[0]?.png ?? '', /^data:image\/png;base64,/);
    const launched = (await c.request('runs.launch', {
      kind: 'pretrain',
      dataset: 'builtin-sample',
      preset: 'digpt-micro-32',
      teacher: 'builtin',
      objective: 'digpt',
      steps: 3,
      batch: 4,
      accum: 1,
      blr: 1e-3,
      seed: 0,
      checkpoint_every: 3,
    })) as { ok: boolean; value: { id: string }; error?: string };
    assert.ok(launched.ok, launched.error);
    const id = launched.value.id;
    await until(() =>
      c.events.some(
        (e) => e.name === 'run.update' && e.payload?.['id'] === id && e.payload['status'] === 'done',
      ),
    );
    const steps = c.events
      .filter((e) => e.name === 'run.metrics')
      .flatMap((e) => e.payload?.['records'] as { loss?: number }[]);
    assert.equal(steps.filter((r) => r.loss !== undefined).length, 3);
    const frame = c.events.find((e) => e.name === 'run.patchOrder')?.payload as {
      k: number;
      order: number[][];
      clusterError: number[][];
      images: string[];
    };
    assert.equal(frame.k, 4);
    assert.equal(frame.order.length, 4);
    assert.deepEqual([...(frame.order[0] ?? [])].sort(), [0, 1, 2, 3]);
    assert.equal(frame.clusterError[0]?.length, 3);
    assert.match(frame.images[0] ?? '', /^data:image\/png;base64,/);
    const cks = (await c.request('runs.checkpoints', { id })) as { value: { step: number }[] };
    assert.deepEqual(
      cks.value.map((k) => k.step),
      [3],
    );
    const exp = (await c.request('runs.export', { id, format: 'timm' })) as {
      ok: boolean;
      value: { path: string };
      error?: string;
    };
    assert.ok(exp.ok, exp.error);
    assert.ok(fs.existsSync(exp.value.path));
    const outsideExport = await c.request('runs.export', {
      id,
      format: 'timm',
      out: '/tmp/elsewhere.safetensors',
    });
    assert.match(outsideExport.error ?? '', /export path \/tmp\/elsewhere\.safetensors is outside/);
    c.ws.close();
  });

  it('registers a dropped folder and rescans it when images are added', async () => {
    const c = await client();
    const dir = nodePath.join(tmp, 'drop');
    fs.mkdirSync(nodePath.join(dir, 'a'), { recursive: true });
    fs.mkdirSync(nodePath.join(dir, 'b'), { recursive: true });
    const sharp = (await import('sharp')).default;
    const png = (v: number) =>
      sharp({ create: { width: 8, height: 8, channels: 3, background: { r: v, g: v, b: v } } })
        .png()
        .toBuffer();
    for (let i = 0; i < 4; i++) {
      fs.writeFileSync(nodePath.join(dir, 'a', `${i}.png`), await png(i * 10));
      fs.writeFileSync(nodePath.join(dir, 'b', `${i}.png`), await png(200 - i * 10));
    }
    const added = (await c.request('datasets.add', { path: dir })) as {
      ok: boolean;
      value: { id: string; images: number };
      error?: string;
    };
    assert.ok(added.ok, added.error);
    assert.equal(added.value.images, 8);
    fs.writeFileSync(nodePath.join(dir, 'b', 'new.png'), await png(99));
    await until(
      () =>
        c.events.some(
          (e) =>
            e.name === 'dataset.update' && e.payload?.['id'] === added.value.id && e.payload['images'] === 9,
        ),
      15_000,
    );
    c.ws.close();
  });
});
