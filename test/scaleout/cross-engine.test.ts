// A run moving between the engines through `digpt scaleout`: the workbench trains, digpt_torch continues it on 2 DDP
// ranks through the bundle's launch/local.sh, the workbench probes, exports and resumes the result; and the reverse
// (a bundle of a new run: digpt_torch trains from the workbench's initial weights, the workbench goes on). Every
// loss after a hand-over matches the same run trained on the workbench alone, within the parity tolerance.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { readMetrics } from '../../app/runs/metrics.js';
import { digpt, sandbox, TRAIN } from '../app/runs-helpers.js';
import { PYTHON } from './python-helpers.js';

const box = sandbox('digpt-cross-engine-');
const settings = [...TRAIN, '--steps', '6', '--checkpoint-every', '2'];
/** The same settings for a new run made by digpt scaleout (threads are the workbench's business: no --workers). */
const newRun = settings.filter((_, i) => settings[i] !== '--workers' && settings[i - 1] !== '--workers');

/** Step -> loss parts of a run's metrics.jsonl. */
function losses(dir: string): Map<number, [number, number, number]> {
  const m = new Map<number, [number, number, number]>();
  for (const r of readMetrics(dir))
    if (typeof r['loss'] === 'number')
      m.set(r.step as number, [r['loss'], r['loss_gen'] as number, r['loss_dis'] as number]);
  return m;
}

function assertSameLosses(got: string, want: string, steps: number[], what: string): void {
  const g = losses(got);
  const w = losses(want);
  for (const s of steps) {
    const a = g.get(s);
    const b = w.get(s);
    assert.ok(a && b, `${what}: step ${s} is missing (${a ? 'reference' : 'run'})`);
    // the parity tolerance of losses (spec 4): 1e-5 absolute
    for (let i = 0; i < 3; i++)
      assert.ok(Math.abs((a[i] as number) - (b[i] as number)) <= 1e-5, `${what}: step ${s}: ${a} vs ${b}`);
  }
}

function ok(r: ReturnType<typeof digpt>, what: string): string {
  assert.equal(r.status, 0, `${what}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Runs a bundle's launch/local.sh. */
function local(bundle: string, ...args: string[]): void {
  const r = spawnSync('bash', [nodePath.join(bundle, 'launch', 'local.sh'), ...args], {
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...box.env, PYTHON, OMP_NUM_THREADS: '1' },
  });
  assert.equal(r.status, 0, `local.sh ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
}

const steps = (dir: string) =>
  readMetrics(dir)
    .filter((r) => typeof r['loss'] === 'number')
    .map((r) => r.step);
const engines = (dir: string) =>
  readMetrics(dir)
    .filter((r) => r['event'] === 'engine')
    .map((r) => [r['engine'], r.step]);

describe('digpt scaleout: a run handed to digpt_torch and taken back', () => {
  // the same run on the workbench alone: the reference of every hand-over
  const ref = nodePath.join(box.dir, 'ref');
  const refRun = () => {
    if (!fs.existsSync(nodePath.join(ref, 'checkpoints', 'step-00000006')))
      ok(digpt(box, ['pretrain', ...settings, '--out', ref]), 'the reference run');
    return ref;
  };

  it('workbench first: 2 steps here, 2 on 2 DDP ranks, then probe, export and resume here', () => {
    refRun();
    const run = nodePath.join(box.dir, 'first');
    fs.cpSync(ref, run, { recursive: true });
    for (const s of ['4', '6'])
      fs.rmSync(nodePath.join(run, 'checkpoints', `step-0000000${s}`), { recursive: true });
    const bundle = nodePath.join(box.dir, 'bundle-1');
    const out = ok(digpt(box, ['scaleout', run, '--out', bundle, '--gpus-per-node', '2']), 'digpt scaleout');
    assert.match(out, /step 2, 2 rank\(s\) x batch 4/);
    local(bundle, '--nproc', '2', '--steps', '4');
    const moved = nodePath.join(bundle, 'run');
    assertSameLosses(moved, ref, [3, 4], 'digpt_torch after the hand-over');
    assert.deepEqual(steps(moved), [1, 2, 3, 4]);
    assert.deepEqual(engines(moved), [['digpt_torch', 2]]);
    // the patch orders the app draws, with the crops at the last step
    const po = fs
      .readFileSync(nodePath.join(moved, 'patch-order.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as { step: number; order: number[][]; samples?: { count: number; size: number } },
      );
    assert.deepEqual(
      po.map((p) => p.step),
      [3, 4],
    );
    assert.deepEqual([po[1]?.order.length, po[1]?.samples?.count, po[1]?.samples?.size], [8, 8, 32]);

    // a synced copy on the desktop: the weights only, the optimizer files left on the cluster
    const synced = nodePath.join(box.dir, 'synced');
    fs.cpSync(moved, synced, { recursive: true });
    for (const ck of fs.readdirSync(nodePath.join(synced, 'checkpoints')))
      fs.rmSync(nodePath.join(synced, 'checkpoints', ck, 'optimizer.safetensors'));
    const probe = ok(
      digpt(box, ['probe', '--data', TRAIN[1] as string, '--from', synced, '--json']),
      'probe',
    );
    assert.match(probe, /"top1":/);
    const exported = ok(digpt(box, ['export', synced, '--format', 'timm', '--json']), 'export');
    const path = (JSON.parse(exported.trim().split('\n').at(-1) as string) as { path: string }).path;
    assert.ok(fs.statSync(path).size > 0);
    const noOptimizer = digpt(box, ['resume', synced]);
    assert.equal(noOptimizer.status, 1);
    assert.match(
      noOptimizer.stderr,
      /optimizer\.safetensors: missing \(a synced copy of a cluster run may have left it there/,
    );

    ok(digpt(box, ['resume', moved]), 'digpt resume of the returned run');
    assertSameLosses(moved, ref, [5, 6], 'the workbench after taking it back');
    assert.deepEqual(steps(moved), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(engines(moved), [
      ['digpt_torch', 2],
      ['workbench', 4],
    ]);
  });

  it('digpt_torch first: a bundle of a new run trains 3 steps on 2 ranks from the workbench initial weights; the workbench finishes it', () => {
    refRun();
    const bundle = nodePath.join(box.dir, 'bundle-2');
    const out = ok(
      digpt(box, ['scaleout', ...newRun, '--out', bundle, '--gpus-per-node', '2']),
      'scaleout of a new run',
    );
    assert.match(out, /step 0, 2 rank\(s\)/);
    local(bundle, '--nproc', '2', '--steps', '3');
    const run = nodePath.join(bundle, 'run');
    assertSameLosses(run, ref, [1, 2, 3], 'digpt_torch from step 0');
    ok(digpt(box, ['resume', run]), 'digpt resume');
    assertSameLosses(run, ref, [4, 5, 6], 'the workbench after digpt_torch');
    assert.deepEqual(steps(run), [1, 2, 3, 4, 5, 6]);
  });

  it('refuses before writing anything: a batch that does not divide over the ranks, a fine-tuning run, an existing --out', () => {
    refRun();
    const bundle = nodePath.join(box.dir, 'never');
    const odd = digpt(box, ['scaleout', ref, '--out', bundle, '--nodes', '1', '--gpus-per-node', '3']);
    assert.equal(odd.status, 1);
    assert.match(odd.stderr, /the run's batch 8 does not divide over 3 ranks \(1 node\(s\) x 3 GPU\(s\)\)/);
    const both = digpt(box, ['scaleout', ref, '--data', TRAIN[1] as string, '--out', bundle]);
    assert.equal(both.status, 2);
    assert.match(both.stderr, /give RUN_DIR or --data\/--preset\/--teacher/);
    fs.mkdirSync(bundle);
    const exists = digpt(box, ['scaleout', ref, '--out', bundle]);
    assert.match(exists.stderr, /already exists; give another --out/);
    fs.rmdirSync(bundle);
    const notRun = digpt(box, ['scaleout', box.dir, '--out', bundle]);
    assert.match(notRun.stderr, /no config\.json; not a run folder/);
    // nothing half-made beside the bundle
    assert.deepEqual(
      fs.readdirSync(box.dir).filter((f) => f.startsWith('.tmp-')),
      [],
    );
  });
});
