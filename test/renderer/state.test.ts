// The renderer's state classes (.svelte.ts, runes) loaded through Vite's SSR pipeline, driven by a scripted bridge.
import * as assert from 'node:assert/strict';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createServer, type ViteDevServer } from 'vite';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');
let vite: ViteDevServer;

// The modules are loaded at run time by Vite; their real types live in the renderer's own (DOM, Svelte) program,
// which this Node test does not compile, so the test names only what it touches.
interface Row {
  id: string;
  images?: number;
  status?: string;
}
interface DatasetsStateT {
  list: Row[];
  addMessage: unknown;
  load(): Promise<void>;
  add(path: string): Promise<Row | null>;
  upload(
    name: string,
    files: { path: string; size: number; read(start: number, end: number): Promise<ArrayBuffer> }[],
  ): Promise<Row | null>;
}
interface RunsStateT {
  list: Row[];
  presets: { name: string }[];
  controlErrors: Record<string, string>;
  load(): Promise<void>;
  launch(req: unknown): Promise<Row>;
  control(id: string, action: string): Promise<void>;
  get(id: string): Row | undefined;
}
interface RunSessionT {
  columns: { get(key: string): { x: number[]; y: number[] } };
  patchOrder: unknown;
  dispose(): void;
}
interface Loaded {
  DatasetsState: new (bridge: unknown) => DatasetsStateT;
  RunsState: new (bridge: unknown) => RunsStateT;
  RunSession: new (bridge: unknown, id: string) => RunSessionT;
}

before(async () => {
  // RunSession batches redraws on animation frames; Node has none, so a frame is a timer here
  (globalThis as { requestAnimationFrame?: unknown }).requestAnimationFrame ??= (cb: () => void) =>
    setTimeout(cb, 16);
  (globalThis as { cancelAnimationFrame?: unknown }).cancelAnimationFrame ??= (
    h: ReturnType<typeof setTimeout>,
  ) => clearTimeout(h);
  vite = await createServer({
    configFile: nodePath.join(ROOT, 'vite.config.ts'),
    server: { middlewareMode: true, hmr: false, ws: false },
    appType: 'custom',
    logLevel: 'error',
  });
});
after(async () => {
  await vite.close();
});

/** A bridge whose requests are answered by `answers` and whose events the test fires. */
function scripted(answers: Record<string, (p: Record<string, unknown>) => unknown>) {
  const handlers = new Map<string, ((p: unknown) => void)[]>();
  const calls: [string, unknown][] = [];
  const bridge = {
    transport: 'websocket' as const,
    async request(name: string, payload: Record<string, unknown>) {
      calls.push([name, payload]);
      const a = answers[name];
      if (!a) throw new Error(`unexpected request ${name}`);
      return a(payload);
    },
    on(name: string, cb: (p: unknown) => void) {
      handlers.set(name, [...(handlers.get(name) ?? []), cb]);
      return () =>
        handlers.set(
          name,
          (handlers.get(name) ?? []).filter((h) => h !== cb),
        );
    },
    onStatus: () => () => undefined,
    pathForFile: () => null,
    chooseFolder: null,
    chooseExportPath: null,
  };
  const fire = (name: string, payload: unknown): void => {
    for (const h of handlers.get(name) ?? []) h(payload);
  };
  return { bridge, fire, calls };
}

const run = (id: string, status: string, startedAt: string) => ({
  id,
  dir: `/w/runs/${id}`,
  kind: 'pretrain',
  title: id,
  status,
  step: 0,
  totalSteps: 10,
  etaSeconds: null,
  imgPerSec: null,
  startedAt,
});

describe('DatasetsState', () => {
  it('loads, adds (keeping the engine message on failure), and follows update/removed events', async () => {
    const { DatasetsState } = (await vite.ssrLoadModule(
      '/src/features/datasets/datasets.svelte.ts',
    )) as Loaded;
    const { bridge, fire } = scripted({
      'datasets.list': () => [{ id: 'a', name: 'A', images: 1 }],
      'datasets.add': (p) => {
        if (p['path'] === '/bad') throw new Error('/bad: no such folder');
        return { id: 'b', name: 'B', images: 2 };
      },
    });
    const s = new DatasetsState(bridge);
    await s.load();
    assert.deepEqual(
      s.list.map((d) => d.id),
      ['a'],
    );
    assert.equal(await s.add('/bad'), null);
    assert.deepEqual(s.addMessage, { kind: 'error', text: '/bad: no such folder' });
    await s.add('/good');
    assert.deepEqual(s.addMessage, { kind: 'info', text: 'added B' });
    fire('dataset.update', { id: 'a', name: 'A', images: 5 });
    assert.equal(s.list.find((d) => d.id === 'a')?.images, 5);
    fire('dataset.removed', { id: 'a' });
    assert.deepEqual(
      s.list.map((d) => d.id),
      ['b'],
    );
  });

  it('uploads a dropped folder file by file, then registers it', async () => {
    const { DatasetsState } = (await vite.ssrLoadModule(
      '/src/features/datasets/datasets.svelte.ts',
    )) as Loaded;
    const { bridge, calls } = scripted({
      'datasets.uploadBegin': () => ({ uploadId: 'u1', chunkBytes: 512 * 1024 }),
      'datasets.uploadFile': (p) => ({ received: p['size'] }),
      'datasets.uploadEnd': () => ({ id: 'up', name: 'cats', path: '/w/uploads/cats', images: 2 }),
    });
    const s = new DatasetsState(bridge);
    const file = (path: string, text: string) => ({
      path,
      size: text.length,
      read: async (start: number, end: number) =>
        new TextEncoder().encode(text.slice(start, end)).buffer as ArrayBuffer,
    });
    const d = await s.upload('cats', [file('a/1.png', 'xy'), file('b/2.png', 'z')]);
    assert.equal(d?.id, 'up');
    assert.deepEqual(
      calls.map(([n]) => n),
      ['datasets.uploadBegin', 'datasets.uploadFile', 'datasets.uploadFile', 'datasets.uploadEnd'],
    );
    assert.deepEqual(calls[1]?.[1], {
      uploadId: 'u1',
      path: 'a/1.png',
      size: 2,
      offset: 0,
      data: Buffer.from('xy').toString('base64'),
    });
    assert.deepEqual(
      s.list.map((x) => x.id),
      ['up'],
    );
  });
});

describe('RunsState', () => {
  it('sorts runs newest first, puts launched and updated runs in place, and keeps control errors per run', async () => {
    const { RunsState } = (await vite.ssrLoadModule('/src/features/runs/runs.svelte.ts')) as Loaded;
    const { bridge, fire } = scripted({
      'runs.list': () => [
        run('old', 'done', '2026-01-01T00:00:00Z'),
        run('new', 'idle', '2026-02-01T00:00:00Z'),
      ],
      'presets.list': () => [{ name: 'digpt-micro-32', summary: 's', model: {} }],
      'runs.launch': () => run('launched', 'running', '2026-03-01T00:00:00Z'),
      'runs.control': (p) => {
        if (p['action'] === 'pause') throw new Error('run old is not running');
        return { ...run(String(p['id']), 'running', '2026-02-01T00:00:00Z') };
      },
    });
    const s = new RunsState(bridge);
    await s.load();
    assert.deepEqual(
      s.list.map((r) => r.id),
      ['new', 'old'],
    );
    assert.equal(s.presets[0]?.name, 'digpt-micro-32');
    await s.launch({} as never);
    assert.equal(s.list[0]?.id, 'launched');
    fire('run.update', { ...run('old', 'failed', '2026-01-01T00:00:00Z'), error: 'engine worker crashed' });
    assert.equal(s.get('old')?.status, 'failed');
    await s.control('old', 'pause');
    assert.equal(s.controlErrors['old'], 'run old is not running');
    await s.control('new', 'resume');
    assert.equal(s.get('new')?.status, 'running');
    assert.equal(s.controlErrors['new'], undefined);
  });
});

describe('RunSession', () => {
  it('reads a run once, then appends live metrics of that run only, and follows its patch order', async () => {
    const { RunSession } = (await vite.ssrLoadModule('/src/features/runs/run-session.svelte.ts')) as Loaded;
    const { bridge, fire } = scripted({
      'runs.metrics': () => [
        { step: 1, loss: 4 },
        { step: 2, loss: 3.5 },
      ],
      'runs.patchOrder': () => null,
    });
    const s = new RunSession(bridge, 'r1');
    await new Promise((r) => setTimeout(r, 20));
    fire('run.metrics', { runId: 'other', records: [{ step: 9, loss: 1 }] });
    fire('run.metrics', { runId: 'r1', records: [{ step: 3, loss: 3 }] });
    await new Promise((r) => setTimeout(r, 300));
    const loss = s.columns.get('loss');
    assert.deepEqual([...loss.x], [1, 2, 3]);
    assert.deepEqual([...loss.y], [4, 3.5, 3]);
    const frame = {
      runId: 'r1',
      step: 3,
      clustersPerSide: 2,
      k: 4,
      order: [[2, 0, 3, 1]],
      clusterError: [[0.5, 0.2, 0.9]],
      images: ['data:'],
    };
    fire('run.patchOrder', frame);
    assert.deepEqual(s.patchOrder, frame);
    s.dispose();
  });
});
