// What a run may be asked to do: config.json checked on resume with the run settings' bounds, job specs checked at
// start, --workers 2 only on wasm, and a batch too large for memory refused before anything is allocated.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkJobSpec, readRunConfig } from '../../app/runs/config.js';
import { PretrainRun } from '../../app/worker/pretrain-run.js';
import { initBackend } from '../../engine/backend.js';
import { BatchTooLargeError } from '../../engine/train/memory.js';
import { digpt, images, MICRO, sandbox, TRAIN } from './runs-helpers.js';

before(async () => {
  await initBackend();
});

const box = sandbox('digpt-config-');
const data = images(8, 36, 4);
let n = 0;
const fresh = (): string => nodePath.join(box.dir, `run-${n++}`);

/** A finished two-step run (one checkpoint) whose config.json the test then edits. */
async function twoSteps(): Promise<string> {
  const dir = fresh();
  const r = PretrainRun.create(dir, { ...MICRO, steps: 2 }, data);
  await r.runSteps(2);
  r.dispose();
  return dir;
}

function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): string {
  const p = nodePath.join(dir, 'config.json');
  const c = JSON.parse(fs.readFileSync(p, 'utf8')) as Record<string, unknown>;
  edit(c);
  fs.writeFileSync(p, JSON.stringify(c, null, 2));
  return p;
}

describe('config.json on resume', () => {
  it('names the file and the field of every bad setting, and resumes nothing', async () => {
    const dir = await twoSteps();
    const metrics = fs.readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8');
    const cases: [(c: Record<string, unknown>) => void, RegExp][] = [
      [(c) => (c['blr'] = -1), /config\.json: blr: Too small: expected number to be >0 \(got -1\)$/],
      [
        (c) => (c['checkpoint_every'] = 0),
        /config\.json: checkpoint_every: Too small: expected number to be >0 \(got 0\)$/,
      ],
      [(c) => (c['workers'] = 5), /config\.json: workers: .* \(got 5\)$/],
      [
        (c) => (c['steps'] = 'abc'),
        /config\.json: steps: Invalid input: expected number, received string \(got "abc"\)$/,
      ],
      [(c) => delete c['model'], /config\.json: model: Invalid input: expected record, received undefined$/],
      [
        (c) => ((c['model'] as Record<string, unknown>)['img_size'] = 36),
        /config\.json: model\.img_size: image size 36 is not divisible by patch_size x clusters_per_side = 4 x 2/,
      ],
      [
        (c) => (c['kind'] = 'probe'),
        /config\.json: kind: "probe"; a training run's config says "pretrain" or "finetune" \(a probe is not a training run\)$/,
      ],
      [(c) => (c['chekpoint_every'] = 3), /config\.json: Unrecognized key: "chekpoint_every"$/],
    ];
    const original = fs.readFileSync(nodePath.join(dir, 'config.json'), 'utf8');
    for (const [edit, want] of cases) {
      fs.writeFileSync(nodePath.join(dir, 'config.json'), original);
      const file = editConfig(dir, edit);
      assert.throws(
        () => readRunConfig(dir),
        (e: unknown) => (e as Error).message.startsWith(`${file}: `) && want.test((e as Error).message),
      );
      assert.throws(() => PretrainRun.resume(dir, data), want);
      assert.equal(fs.readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8'), metrics);
    }
    fs.writeFileSync(nodePath.join(dir, 'config.json'), original);
    assert.equal(readRunConfig(dir).kind, 'pretrain');
  });

  it('digpt resume refuses a bad config.json with the same message', async () => {
    const dir = await twoSteps();
    editConfig(dir, (c) => (c['blr'] = -1));
    const r = digpt(box, ['resume', dir]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`${dir}/config\\.json: blr: Too small: expected number to be >0 \\(got -1\\)`),
    );
  });

  it('a job spec is checked with the same bounds before anything starts', async () => {
    const job = {
      kind: 'pretrain' as const,
      data: 'x',
      preset: 'digpt-micro-32',
      teacher: 'pixels',
      objective: 'digpt' as const,
      batch: 0,
      accum: 1,
      seed: 0,
      blr: 1e-3,
      out: 'x',
      checkpoint_every: 1,
    };
    assert.throws(
      () => checkJobSpec(job),
      /^Error: pretrain job: batch: Too small: expected number to be >0 \(got 0\)$/,
    );
    assert.throws(() => checkJobSpec({ ...job, batch: 4, blr: -2 }), /pretrain job: blr: Too small/);
    assert.throws(
      () =>
        checkJobSpec({
          kind: 'finetune',
          data: 'x',
          from: 'scratch',
          batch: 4,
          accum: 1,
          seed: 0,
          out: 'x',
          erase: 2,
        }),
      /finetune job: erase: Too big: expected number to be <=1 \(got 2\)/,
    );
    checkJobSpec({ ...job, batch: 4 });
  });
});

describe('--workers 2 only on wasm', () => {
  it('a job asking for two workers on the cpu backend is refused with the reason, and makes no folder', async () => {
    const out = fresh();
    const r = digpt(
      box,
      ['pretrain', ...TRAIN.map((a) => (a === '1' ? '2' : a)), '--steps', '1', '--out', out],
      {
        DIGPT_BACKEND: 'cpu',
      },
    );
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /--workers 2 runs on the wasm backend only; this process uses cpu/);
    assert.ok(!fs.existsSync(out));
  });

  it('a resumed run whose config says two workers is refused off wasm, naming config.json', async () => {
    const dir = await twoSteps();
    const file = editConfig(dir, (c) => (c['workers'] = 2));
    const metrics = fs.readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8');
    const r = digpt(box, ['resume', dir], { DIGPT_BACKEND: 'cpu' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`${file}: workers 2 runs on the wasm backend only; this process uses cpu`),
    );
    assert.equal(fs.readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8'), metrics);
  });
});

describe('a batch too large for memory', () => {
  it('is refused before the run folder is made, naming the setting, the need and the limit', async () => {
    const out = fresh();
    assert.throws(
      () => PretrainRun.create(out, { ...MICRO, batch: 100_000 }, data),
      (e: unknown) =>
        e instanceof BatchTooLargeError &&
        /^--batch 100000 needs about \d+\.\d GiB of activations on wasm; the limit is 2\.5 GiB; use --batch <= \d+ \(with --accum for the same effective batch\)$/.test(
          e.message,
        ),
    );
    assert.ok(!fs.existsSync(out));
  });

  it('digpt pretrain refuses it at once and leaves no folder; the suggested batch is accepted', async () => {
    const out = fresh();
    const r = digpt(box, [
      'pretrain',
      ...TRAIN.map((a) => (a === '8' ? '100000' : a)),
      '--steps',
      '1',
      '--out',
      out,
    ]);
    assert.equal(r.status, 1, r.stderr);
    const m =
      /--batch 100000 needs about [\d.]+ GiB of activations on (\w+); the limit is [\d.]+ GiB; use --batch <= (\d+)/.exec(
        r.stderr,
      );
    assert.ok(m, r.stderr);
    assert.ok(!fs.existsSync(out));
    // the largest batch it suggests is itself accepted by the same check (a micro-batch that big is not run here)
    const suggested = Number(m[2]);
    assert.ok(suggested >= 32, `suggested --batch <= ${suggested}`);
    const ok = PretrainRun.create(fresh(), { ...MICRO, batch: suggested }, data);
    ok.dispose();
  });
});

after(() => {
  fs.rmSync(box.dir, { recursive: true, force: true });
});
