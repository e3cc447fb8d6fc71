// One workspace for every surface: a CLI run without --out is listed by a Workbench and by `digpt serve` over
// $DIGPT_WORKSPACE; `digpt serve --logdir DIR` lists any folder of runs; SIGTERM stops serve's jobs with a checkpoint.
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import type { RunSummary } from '../../app/api/contract.js';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import { Workbench } from '../../app/workbench/index.js';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');
const BIN = nodePath.join(ROOT, 'bin', 'digpt.js');
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-serve-cli-'));
const workspace = nodePath.join(tmp, 'ws');
const env = { ...process.env, DIGPT_CACHE: nodePath.join(tmp, 'cache'), DIGPT_WORKSPACE: workspace };
const servers = new Set<ChildProcess>();

after(() => {
  for (const s of servers) s.kill('SIGKILL');
});

interface Api {
  request(name: string, payload: unknown): Promise<{ ok: boolean; value?: unknown; error?: string }>;
  events: { name: string; payload: Record<string, unknown> }[];
  close(): void;
}

/** Starts `digpt serve` and connects to its API with the printed token. */
async function startServe(args: string[]): Promise<{ child: ChildProcess; api: Api; stderr: () => string }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], { cwd: tmp, env });
  servers.add(child);
  child.on('exit', () => servers.delete(child));
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = await new Promise<URL>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /open (http:\/\/\S+)/.exec(out);
      if (m) resolve(new URL(m[1] as string));
    });
    child.on('exit', (code) => reject(new Error(`digpt serve exited with ${code}: ${stderr}`)));
  });
  const ws = new WebSocket(`ws://${url.host}/api?token=${url.searchParams.get('token') ?? ''}`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const pending = new Map<number, (r: { ok: boolean; value?: unknown; error?: string }) => void>();
  const events: Api['events'] = [];
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as {
      type: string;
      id?: number;
      name?: string;
      payload?: Record<string, unknown>;
      result?: { ok: boolean };
    };
    if (m.type === 'event') events.push({ name: m.name ?? '', payload: m.payload ?? {} });
    else if (m.id !== undefined && m.result) pending.get(m.id)?.(m.result);
  });
  let next = 1;
  const api: Api = {
    request: (name, payload) =>
      new Promise((resolve) => {
        const id = next++;
        pending.set(id, resolve);
        ws.send(JSON.stringify({ type: 'request', id, name, payload }));
      }),
    events,
    close: () => ws.close(),
  };
  return { child, api, stderr: () => stderr };
}

const TRAIN = [
  ...['--data', BUILTIN_SAMPLE_DIR, '--preset', 'digpt-micro-32', '--teacher', 'pixels'],
  ...['--batch', '4', '--blr', '0.01', '--steps', '2'],
];

async function until(pred: () => boolean, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('one workspace for the CLI, the Workbench and digpt serve', () => {
  let cliRun = '';

  it('a CLI run without --out lands in $DIGPT_WORKSPACE/runs, and a Workbench over that workspace lists it', async () => {
    const r = spawnSync(process.execPath, [BIN, 'pretrain', ...TRAIN], { cwd: tmp, env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const runs = fs.readdirSync(nodePath.join(workspace, 'runs'));
    assert.equal(runs.length, 1);
    assert.match(runs[0] as string, /^pretrain-\d{8}-\d{6}$/);
    cliRun = runs[0] as string;
    assert.match(r.stdout, new RegExp(`finished at step 2: ${nodePath.join(workspace, 'runs', cliRun)}`));
    const wb = new Workbench({ workspace, watch: false });
    try {
      const list = await wb.handle('runs.list', {});
      assert.ok(list.ok);
      const run = (list.value as RunSummary[]).find((x) => x.id === cliRun);
      assert.deepEqual([run?.status, run?.step], ['done', 2]);
    } finally {
      await wb.close();
    }
  });

  it('digpt serve without --workspace serves $DIGPT_WORKSPACE and lists that CLI run', async () => {
    const s = await startServe([]);
    const info = await s.api.request('app.info', {});
    assert.equal((info.value as { workspace: string }).workspace, workspace);
    const list = await s.api.request('runs.list', {});
    assert.ok((list.value as RunSummary[]).some((x) => x.id === cliRun && x.status === 'done'));
    s.api.close();
    s.child.kill('SIGTERM');
    assert.equal(await new Promise((r) => s.child.once('exit', r)), 0);
  });

  it('digpt serve --logdir DIR lists the run folders in DIR', async () => {
    const logs = nodePath.join(tmp, 'logs');
    for (const name of ['exp-a', 'exp-b'])
      fs.cpSync(nodePath.join(workspace, 'runs', cliRun), nodePath.join(logs, name), { recursive: true });
    const s = await startServe(['--workspace', nodePath.join(tmp, 'other-ws'), '--logdir', logs]);
    const list = await s.api.request('runs.list', {});
    assert.ok(list.ok, list.error);
    const runs = list.value as RunSummary[];
    assert.deepEqual(runs.map((x) => x.id).sort(), ['exp-a', 'exp-b']);
    assert.ok(runs.every((x) => x.status === 'done' && x.step === 2 && x.dir.startsWith(logs)));
    const metrics = await s.api.request('runs.metrics', { id: 'exp-a' });
    // the two steps' records (and the run's closing evaluation)
    assert.equal((metrics.value as { loss?: number }[]).filter((m) => m.loss !== undefined).length, 2);
    s.api.close();
    s.child.kill('SIGTERM');
    await new Promise((r) => s.child.once('exit', r));
    const bad = spawnSync(process.execPath, [BIN, 'serve', '--logdir', nodePath.join(tmp, 'nowhere')], {
      cwd: tmp,
      env,
      encoding: 'utf8',
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--logdir: .*nowhere does not exist/);
  });

  it('on SIGTERM, serve stops its running jobs with a checkpoint at the stop step, then exits 0', async () => {
    const s = await startServe([]);
    const launched = await s.api.request('runs.launch', {
      kind: 'pretrain',
      dataset: 'builtin-sample',
      preset: 'digpt-micro-32',
      teacher: 'pixels',
      objective: 'digpt',
      steps: 500,
      batch: 4,
      accum: 1,
      blr: 1e-3,
      seed: 0,
      checkpoint_every: 1000,
    });
    assert.ok(launched.ok, launched.error);
    const run = launched.value as RunSummary;
    await until(() =>
      s.api.events.some(
        (e) => e.name === 'run.update' && e.payload['id'] === run.id && Number(e.payload['step']) >= 2,
      ),
    );
    s.child.kill('SIGTERM');
    const code = await new Promise((r) => s.child.once('exit', r));
    assert.equal(code, 0, s.stderr());
    assert.match(s.stderr(), /SIGTERM: stopping running jobs \(each writes a checkpoint\)/);
    const logged = fs
      .readFileSync(nodePath.join(run.dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; loss?: number })
      .filter((l) => l.loss !== undefined);
    const step = logged.at(-1)?.step ?? 0;
    assert.ok(step >= 2 && step < 500, `stopped at step ${step}`);
    const folder = nodePath.join(run.dir, 'checkpoints', `step-${String(step).padStart(8, '0')}`);
    assert.ok(fs.existsSync(nodePath.join(folder, 'manifest.json')), `no checkpoint at step ${step}`);
  });
});
