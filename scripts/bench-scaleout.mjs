// Pretraining speed of the two engines on the same run: the workbench (wasm; 1 and 2 worker threads) and digpt_torch
// (PyTorch on the CPU; 1 and 2 DDP ranks through a bundle's launch/local.sh), digpt-tiny-32 on the built-in sample.
// img/s is the mean of each run's own per-step figure after the first 2 steps (warm-up).
// Usage: node scripts/bench-scaleout.mjs [--preset NAME] [--batch N] [--steps N] [--json]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    preset: { type: 'string', default: 'digpt-tiny-32' },
    batch: { type: 'string', default: '32' },
    steps: { type: 'string', default: '8' },
    json: { type: 'boolean', default: false },
  },
});
const root = join(import.meta.dirname, '..');
const bin = join(root, 'bin', 'digpt.js');
const sample = join(root, 'app', 'datasets', 'sample', 'fashion-mnist-sample');
const python = process.env.DIGPT_PYTHON ?? '/usr/bin/python3';
const work = mkdtempSync(join(tmpdir(), 'digpt-bench-scaleout-'));
const env = { ...process.env, DIGPT_WORKSPACE: join(work, 'ws'), DIGPT_CACHE: join(work, 'cache') };
const settings = ['--data', sample, '--preset', a.preset, '--teacher', 'pixels', '--batch', a.batch];
const steps = Number(a.steps);

function run(cmd, args) {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 3_600_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stderr.slice(-3000)}`);
}

/** The mean img/s of a run's step lines after the first two. */
function imgPerS(dir) {
  const xs = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((r) => typeof r.loss === 'number' && r.step > 2)
    .map((r) => r.img_per_s);
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}

const results = [];
// the engines alternate at each parallelism, so a change of load on the machine hits both alike
for (const n of ['1', '2']) {
  const out = join(work, `wb-${n}`);
  run(process.execPath, [
    bin,
    'pretrain',
    ...settings,
    '--steps',
    String(steps),
    '--workers',
    n,
    '--out',
    out,
  ]);
  results.push({ engine: 'workbench (wasm)', parallel: `${n} worker thread(s)`, img_per_s: imgPerS(out) });
  const bundle = join(work, `bundle-${n}`);
  run(process.execPath, [
    bin,
    'scaleout',
    ...settings,
    '--steps',
    String(steps),
    '--gpus-per-node',
    n,
    '--out',
    bundle,
  ]);
  // one thread per rank, as the workbench has one per worker: two OpenBLAS threads on a shared 2-core box thrash
  run('bash', [join(bundle, 'launch', 'local.sh'), '--nproc', n, '--threads', '1']);
  results.push({
    engine: 'digpt_torch (PyTorch CPU)',
    parallel: `${n} DDP rank(s) x 1 thread`,
    img_per_s: imgPerS(join(bundle, 'run')),
  });
}
rmSync(work, { recursive: true, force: true });
const torch = spawnSync(python, ['-c', 'import torch; print(torch.__version__, torch.get_num_threads())'], {
  encoding: 'utf8',
}).stdout.trim();
const meta = { preset: a.preset, batch: Number(a.batch), steps, cpus: cpus().length, torch };
if (a.json) process.stdout.write(`${JSON.stringify({ ...meta, results })}\n`);
else {
  process.stdout.write(`${a.preset}, batch ${a.batch}, ${steps} steps, ${meta.cpus} CPUs, torch ${torch}\n`);
  for (const r of results)
    process.stdout.write(
      `  ${r.engine.padEnd(27)} ${r.parallel.padEnd(14)} ${r.img_per_s.toFixed(1)} img/s\n`,
    );
}
