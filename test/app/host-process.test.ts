// The job host's child-process transport (one TensorFlow per process), forced here with DIGPT_JOB_PROCESS=1 on wasm.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import { jobTransport, startJob, type JobHandle } from '../../app/jobs/host.js';
import type { PretrainJob, WorkerEvent } from '../../app/jobs/protocol.js';

const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-host-'));
const env = {
  ...process.env,
  DIGPT_JOB_PROCESS: '1',
  DIGPT_CACHE: nodePath.join(tmp, 'cache'),
  DIGPT_WORKSPACE: nodePath.join(tmp, 'ws'),
};

function pretrain(out: string, steps: number): PretrainJob {
  return {
    kind: 'pretrain',
    data: BUILTIN_SAMPLE_DIR,
    preset: 'digpt-micro-32',
    teacher: 'pixels',
    objective: 'digpt',
    steps,
    batch: 8,
    accum: 1,
    seed: 1,
    blr: 0.01,
    out: nodePath.join(tmp, out),
    checkpoint_every: 1000,
    workers: 1,
  };
}

/** Every event of the job until it exits, calling `onEvent` on each. */
async function collect(
  h: JobHandle,
  onEvent: (e: WorkerEvent) => void = () => undefined,
): Promise<{ events: WorkerEvent[]; exit: { ok: boolean; error?: string } }> {
  const events: WorkerEvent[] = [];
  h.on('event', (e) => {
    events.push(e);
    onEvent(e);
  });
  return { events, exit: await h.done() };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('jobTransport', () => {
  const none = (): boolean => false;
  const gpu = (): boolean => true;
  it('runs a job in a child process when it would get tensorflow: forced, or tfjs-node(-gpu) installed', () => {
    assert.equal(jobTransport({ DIGPT_BACKEND: 'tensorflow' }, none).kind, 'process');
    assert.equal(jobTransport({ DIGPT_BACKEND: 'tensorflow-gpu' }, none).kind, 'process');
    for (const pkg of ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu']) {
      const t = jobTransport({}, (p) => p === pkg);
      assert.deepEqual(t, { kind: 'process', why: `${pkg} is installed: one TensorFlow per process` });
    }
  });

  it('keeps worker threads on wasm and cpu (an engine per thread), unless DIGPT_JOB_PROCESS=1', () => {
    assert.equal(jobTransport({}, none, none).kind, 'thread');
    assert.equal(jobTransport({ DIGPT_BACKEND: 'wasm' }, () => true, gpu).kind, 'thread');
    assert.equal(jobTransport({ DIGPT_BACKEND: 'cpu' }, none, gpu).kind, 'thread');
    assert.equal(jobTransport({ DIGPT_JOB_PROCESS: '1', DIGPT_BACKEND: 'wasm' }, none, none).kind, 'process');
  });

  it('runs a webgpu job in a child process: forced, or a real GPU adapter for an unforced pick', () => {
    assert.deepEqual(jobTransport({ DIGPT_BACKEND: 'webgpu' }, none, none), {
      kind: 'process',
      why: 'DIGPT_BACKEND=webgpu: ending a GPU job must not end the host',
    });
    assert.deepEqual(jobTransport({}, none, gpu), {
      kind: 'process',
      why: 'webgpu (a GPU adapter): ending a GPU job must not end the host',
    });
  });
});

describe('a job in a child process', () => {
  it('streams its steps (typed arrays intact) and stops at a step boundary with a checkpoint', async () => {
    const h = startJob(pretrain('stop', 200), env);
    assert.equal(h.transportKind, 'process');
    assert.ok(h.pid !== undefined && h.pid !== process.pid);
    const { events, exit } = await collect(h, (e) => {
      if (e.type === 'step' && e.record.step === 2) h.stop();
    });
    assert.deepEqual(exit, { ok: true });
    const steps = events.filter((e) => e.type === 'step');
    assert.deepEqual(
      steps.slice(0, 2).map((e) => e.record.step),
      [1, 2],
    );
    const first = steps[0];
    assert.ok(first?.order instanceof Int32Array && first.order.length > 0);
    assert.ok(first.clusterError instanceof Float32Array);
    assert.ok(first.samples?.pixels instanceof Uint8Array);
    const done = events.find((e) => e.type === 'done');
    assert.ok(done?.type === 'done' && done.stopped && done.step < 200, JSON.stringify(done));
    const ckpt = events.find((e) => e.type === 'checkpoint');
    assert.ok(ckpt?.type === 'checkpoint' && ckpt.step === done.step);
    assert.ok(fs.existsSync(nodePath.join(ckpt.folder, 'manifest.json')));
    assert.equal(alive(h.pid as number), false);
  });

  it('kill() ends only the child, without a checkpoint; the host goes on', async () => {
    const h = startJob(pretrain('kill', 200), env);
    const pid = h.pid as number;
    const { events, exit } = await collect(h, (e) => {
      if (e.type === 'step' && e.record.step === 1) void h.kill();
    });
    assert.deepEqual(exit, { ok: false, error: 'engine process was killed by SIGKILL' });
    assert.equal(h.killed, true);
    assert.equal(alive(pid), false);
    assert.ok(!events.some((e) => e.type === 'checkpoint'));
  });

  it('a child that dies (killed from outside, as by the OOM killer) fails its job; the host runs the next one', async () => {
    const h = startJob(pretrain('crash', 200), env);
    const { events, exit } = await collect(h, (e) => {
      if (e.type === 'step' && e.record.step === 1) process.kill(h.pid as number, 'SIGKILL');
    });
    assert.deepEqual(exit, { ok: false, error: 'engine process was killed by SIGKILL' });
    assert.ok(events.some((e) => e.type === 'error' && e.message === 'engine process was killed by SIGKILL'));
    const next = await collect(startJob(pretrain('after-crash', 2), env));
    assert.deepEqual(next.exit, { ok: true });
    assert.equal(next.events.filter((e) => e.type === 'step').length, 2);
  });

  it('a job that fails in the child reports its error, named', async () => {
    const { events, exit } = await collect(startJob({ ...pretrain('bad', 2), preset: 'digpt-huge' }, env));
    assert.equal(exit.ok, false);
    assert.ok(events.some((e) => e.type === 'error' && /unknown preset 'digpt-huge'/.test(e.message)));
  });
});
