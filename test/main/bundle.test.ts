// What the desktop app ships is what is tested: the bundled job worker (dist/main/worker.js of `npm run build:main`)
// runs a tiny pretraining job under plain Node (no tsx, no --import), as a forked child and as a worker thread whose
// data-parallel replica is the bundled replica.js.
import assert from 'node:assert/strict';
import { fork, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import type { PretrainJob, WorkerEvent } from '../../app/jobs/protocol.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'digpt-bundle-'));
// inside the repository, so that the bundles' npm packages (external) resolve from its node_modules, as in the app
mkdirSync(join(root, 'dist'), { recursive: true });
const outdir = mkdtempSync(join(root, 'dist', '.test-bundle-'));

/** Starts a worker thread on the file in argv[2] and relays its messages both ways over this child's IPC. */
const THREAD_HARNESS = `
import { Worker } from 'node:worker_threads';
const worker = new Worker(process.argv[2]);
worker.on('message', (e) => process.send(e));
worker.on('error', (e) => process.send({ seq: -1, type: 'error', name: 'crash', message: e.message }));
worker.on('exit', (code) => process.send({ seq: -1, type: 'exit', code }, () => process.exit(0)));
process.on('message', (m) => worker.postMessage(m));
`;

function job(name: string, workers: 1 | 2): PretrainJob {
  return {
    kind: 'pretrain',
    data: BUILTIN_SAMPLE_DIR,
    preset: 'digpt-micro-32',
    teacher: 'pixels',
    objective: 'digpt',
    steps: 2,
    batch: 4,
    accum: 1,
    seed: 1,
    blr: 0.01,
    out: join(tmp, name),
    checkpoint_every: 1000,
    workers,
  };
}

type Event = WorkerEvent | { seq: number; type: 'exit'; code: number };

/** Runs `file` under plain Node with the job, collecting what it sends until it exits. */
async function run(
  file: string,
  args: string[],
  spec: PretrainJob,
): Promise<{ events: Event[]; code: number }> {
  const child = fork(file, args, {
    cwd: tmp,
    // plain Node: none of the test runner's --import tsx
    execArgv: [],
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      DIGPT_BACKEND: 'wasm',
      DIGPT_CACHE: join(tmp, 'cache'),
      DIGPT_WORKSPACE: join(tmp, 'ws'),
    },
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const events: Event[] = [];
  child.on('message', (m) => events.push(m as Event));
  child.send({ seq: 0, type: 'start', job: spec });
  const code = await new Promise<number>((r) => child.on('exit', (c) => r(c ?? -1)));
  const error = events.find((e) => e.type === 'error');
  assert.equal(error, undefined, `${JSON.stringify(error)}\n${stderr}`);
  return { events, code };
}

function steps(events: Event[]): Extract<WorkerEvent, { type: 'step' }>[] {
  return events.filter((e): e is Extract<WorkerEvent, { type: 'step' }> => e.type === 'step');
}

describe('the bundled job worker', () => {
  before(() => {
    const r = spawnSync(process.execPath, ['scripts/build-main.mjs', '--outdir', outdir], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    writeFileSync(join(tmp, 'thread-harness.mjs'), THREAD_HARNESS);
  });
  after(() => {
    rmSync(outdir, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  it('neither registers tsx nor loads TypeScript', () => {
    for (const name of ['worker.js', 'replica.js', 'index.js', 'job-process.js']) {
      const code = readFileSync(join(outdir, name), 'utf8');
      assert.doesNotMatch(code, /from "tsx|"tsx\/esm|import\(["'][^"']*\.ts["']\)/, name);
    }
  });

  it('trains as a forked child process: backend, run, steps 1 and 2 (typed arrays intact), done', async () => {
    const { events, code } = await run(join(outdir, 'worker.js'), [], job('process', 1));
    assert.equal(code, 0);
    assert.equal(events[0]?.type, 'backend');
    const run0 = events.find((e) => e.type === 'run');
    assert.equal(run0?.type === 'run' && run0.totalSteps, 2);
    const s = steps(events);
    assert.deepEqual(
      s.map((e) => e.record.step),
      [1, 2],
    );
    assert.ok(s.every((e) => Number.isFinite(e.record.loss)));
    assert.ok(s[0]?.order instanceof Int32Array && s[0].order.length > 0);
    assert.ok(s[0]?.clusterError instanceof Float32Array);
    assert.deepEqual(
      events.filter((e) => e.type === 'done').map((e) => e.type === 'done' && e.step),
      [2],
    );
    // the run folder it wrote: one training line per step (an evaluation line may follow)
    const lines = readFileSync(join(tmp, 'process', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n');
    const records = lines.map((l) => JSON.parse(l) as { step: number; loss?: number });
    assert.deepEqual(
      records.filter((r) => r.loss !== undefined).map((r) => r.step),
      [1, 2],
    );
  });

  it('trains as a worker thread with two workers: the replica thread is the bundled replica.js', async () => {
    const { events, code } = await run(
      join(tmp, 'thread-harness.mjs'),
      [join(outdir, 'worker.js')],
      job('thread', 2),
    );
    assert.equal(code, 0);
    assert.deepEqual(
      steps(events).map((e) => e.record.step),
      [1, 2],
    );
    assert.deepEqual(events.at(-1), { seq: -1, type: 'exit', code: 0 });
    const config = JSON.parse(readFileSync(join(tmp, 'thread', 'config.json'), 'utf8')) as {
      workers?: number;
    };
    assert.equal(config.workers, 2);
  });
});
