// The bench behind `npm run bench` and `digpt bench`: images/s of a D-iGPT training step, optionally against PyTorch.
//
// Flags: --preset NAME (digpt-tiny-32), --batch N (32), --accum N (1), --steps N (5), --warmup N (2), --json (one JSON
// line per result), --peer (alternate with the PyTorch peer, ../shared/reference/run_torch_peer.sh), --rounds N
// (engine/peer alternations with --peer, 2), --peer-threads N
// (PyTorch's threads; default: the peer's own, all cores), --profile (wall time per kernel over the timed steps),
// --profile-shapes (the same with products keyed by operand shapes), --backend NAME (as DIGPT_BACKEND: webgpu, wasm...).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { backendReport, describeBackend, initBackend } from '../backend.js';
import { getPreset, type DigptConfig } from '../config.js';
import { useFastWasmKernels } from '../ops/wasm_kernels.js';
import { autoWorkers } from '../parallel/data-parallel.js';
import { formatProfile, KernelProfiler } from './profile.js';
import { benchClipB16 } from './teacher.js';
import { benchSteps, type StepBenchResult } from './step.js';

interface Args {
  preset: string;
  batch: number;
  accum: number;
  steps: number;
  warmup: number;
  json: boolean;
  peer: boolean;
  rounds: number;
  profile: boolean;
  profileShapes: boolean;
  peerThreads: number | undefined;
  /** 'auto' (the default, as `digpt pretrain`): 2 on wasm with 2+ cores; resolved once the backend is up. */
  workers: number | 'auto';
  /** --backend NAME: as DIGPT_BACKEND (which it overrides); undefined: DIGPT_BACKEND or the picker's choice. */
  backend: string | undefined;
  clipB16: boolean;
}

export const USAGE =
  'usage: npm run bench -- [--preset NAME] [--batch N] [--accum N] [--steps N] [--warmup N] [--json] [--peer] ' +
  '[--rounds N] [--peer-threads N] [--profile] [--profile-shapes] [--workers 1|2|auto] [--clip-b16] ' +
  '[--backend tensorflow|tensorflow-gpu|webgpu|wasm|cpu]';

function parseArgs(argv: string[]): Args {
  const a: Args = {
    preset: 'digpt-tiny-32',
    batch: 32,
    accum: 1,
    steps: 5,
    warmup: 2,
    json: false,
    peer: false,
    rounds: 2,
    profile: false,
    profileShapes: false,
    peerThreads: undefined,
    workers: 'auto',
    clipB16: false,
    backend: undefined,
  };
  const count = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min)
      throw new Error(`${flag} needs an integer >= ${min}, got ${v ?? 'nothing'}\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i] as string;
    switch (f) {
      case '--preset':
        a.preset = argv[++i] ?? '';
        break;
      case '--batch':
        a.batch = count(f, argv[++i], 1);
        break;
      case '--accum':
        a.accum = count(f, argv[++i], 1);
        break;
      case '--steps':
        a.steps = count(f, argv[++i], 1);
        break;
      case '--warmup':
        a.warmup = count(f, argv[++i], 0);
        break;
      case '--peer-threads':
        a.peerThreads = count(f, argv[++i], 1);
        break;
      case '--clip-b16':
        a.clipB16 = true;
        break;
      case '--backend':
        a.backend = argv[++i];
        if (!a.backend) throw new Error(`--backend needs a name\n${USAGE}`);
        break;
      case '--workers': {
        const v = argv[++i];
        if (v === 'auto') a.workers = 'auto';
        else if (v === '1' || v === '2') a.workers = Number(v);
        else
          throw new Error(
            `--workers takes 1, 2 or auto (one replica thread), got ${v ?? 'nothing'}\n${USAGE}`,
          );
        break;
      }
      case '--rounds':
        a.rounds = count(f, argv[++i], 1);
        break;
      case '--json':
        a.json = true;
        break;
      case '--peer':
        a.peer = true;
        break;
      case '--profile':
        a.profile = true;
        break;
      case '--profile-shapes':
        a.profile = true;
        a.profileShapes = true;
        break;
      default:
        throw new Error(`unknown flag ${f}\n${USAGE}`);
    }
  }
  return a;
}

/** What the PyTorch peer prints (torch_peer.py). */
interface PeerResult {
  readonly img_per_s: number;
  readonly step_ms_median: number;
  readonly peak_rss_mb: number;
  readonly threads: number;
  readonly blas: string;
  readonly torch: string;
}

const PEER_SCRIPT = nodePath.resolve(
  import.meta.dirname,
  '..',
  '..',
  '..',
  'shared',
  'reference',
  'run_torch_peer.sh',
);

function runPeer(config: DigptConfig, a: Args): PeerResult {
  const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-bench-'));
  const file = nodePath.join(dir, 'config.json');
  try {
    fs.writeFileSync(file, JSON.stringify({ ...config, batch_size: a.batch, accum_steps: a.accum }));
    const threads = a.peerThreads === undefined ? [] : ['--threads', String(a.peerThreads)];
    const r = spawnSync(
      PEER_SCRIPT,
      [file, '--steps', String(a.steps), '--warmup', String(a.warmup), ...threads],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    if (r.status !== 0) throw new Error(`PyTorch peer failed (exit ${r.status ?? r.signal})`);
    const line = r.stdout.trim().split('\n').pop() ?? '';
    return JSON.parse(line) as PeerResult;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function engineLine(r: StepBenchResult, a: Args, config: DigptConfig, why: string): Record<string, unknown> {
  const b = backendReport();
  return {
    kind: 'engine',
    preset: a.preset,
    backend: b.name,
    backend_line: describeBackend(b),
    gemm: b.gemm?.kind ?? null,
    ...(b.adapter ? { adapter: b.adapter } : {}),
    img_per_s: round2(r.img_per_s),
    step_ms_median: round1(r.step_ms_median),
    step_ms: r.step_ms.map(round1),
    cpu_ms_median: round1(r.cpu_ms_median),
    peak_rss_mb: round1(r.peak_rss_mb),
    batch_size: r.batch_size,
    accum_steps: r.accum_steps,
    workers: r.workers,
    workers_why: why,
    kernels_per_step: r.kernels_per_step,
    reads_per_step: r.reads_per_step,
    ...(r.peak_gpu_pool_mb !== undefined ? { peak_gpu_pool_mb: round1(r.peak_gpu_pool_mb) } : {}),
    ...(r.phases_ms
      ? { phases_ms: Object.fromEntries(Object.entries(r.phases_ms).map(([k, x]) => [k, round1(x)])) }
      : {}),
    steps: a.steps,
    warmup: a.warmup,
    config,
  };
}

function printEngine(r: StepBenchResult, a: Args, config: DigptConfig, why: string): void {
  if (a.json) {
    console.log(JSON.stringify(engineLine(r, a, config, why)));
    return;
  }
  console.log(
    `engine: ${r.img_per_s.toFixed(2)} images/s, ${r.step_ms_median.toFixed(0)} ms/step (median of ${a.steps}; ` +
      `all: ${r.step_ms.map((t) => t.toFixed(0)).join(' ')}), CPU ${r.cpu_ms_median.toFixed(0)} ms/step, ` +
      `peak RSS ${r.peak_rss_mb.toFixed(0)} MB; ${r.kernels_per_step} kernels and ${r.reads_per_step} reads per step` +
      (r.peak_gpu_pool_mb !== undefined ? `, GPU pool peak ${r.peak_gpu_pool_mb.toFixed(0)} MB` : ''),
  );
  if (r.phases_ms)
    console.log(
      `  phases (ms/step, median): ${Object.entries(r.phases_ms)
        .map(([k, x]) => `${k} ${x.toFixed(0)}`)
        .join(', ')}`,
    );
}

/** Runs the bench with command-line flags; resolves to the exit code. */
export async function benchMain(argv: readonly string[]): Promise<number> {
  let a: Args;
  try {
    a = parseArgs([...argv]);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  const config = getPreset(a.preset).model;
  const report = await initBackend(a.backend ?? process.env['DIGPT_BACKEND']);
  if (a.clipB16) {
    const r = await benchClipB16(a.batch === 32 ? 8 : a.batch, a.steps, a.warmup);
    if (a.json) console.log(JSON.stringify({ kind: 'teacher', backend: report.name, ...r }));
    else
      console.log(
        `${describeBackend(report)}\nCLIP ViT-B/16 teacher forward at 224 px, batch ${r.batch}: ${r.img_per_s.toFixed(2)} images/s, ` +
          `${r.batch_ms_median.toFixed(0)} ms/batch, peak RSS ${r.peak_rss_mb.toFixed(0)} MB`,
      );
    return 0;
  }
  // the profiler sees this thread's kernels only: profiles run on one thread unless told otherwise
  const auto = a.profile ? { workers: 1 as const, why: '--profile' } : autoWorkers();
  const workers = a.workers === 'auto' ? auto.workers : a.workers;
  const workersWhy = a.workers === 'auto' ? `auto: ${auto.why}` : 'given';
  if (!a.json) {
    console.log(describeBackend(report));
    console.log(`preset ${a.preset}: ${JSON.stringify(config)}`);
    console.log(
      `micro-batch ${a.batch} x ${a.accum}, ${a.warmup} warm-up + ${a.steps} timed steps, ${workers} training ` +
        `thread${workers > 1 ? 's (each micro-batch split with a replica thread)' : ''} (${workersWhy})`,
    );
  }
  // the engine swaps in its faster wasm kernels on first use; done here so that the profiler wraps those
  if (report.tfName === 'wasm') useFastWasmKernels();
  const profiler = a.profile ? new KernelProfiler(report.tfName, a.profileShapes) : undefined;
  const bench = (): Promise<StepBenchResult> =>
    benchSteps(config, {
      batch: a.batch,
      accum: a.accum,
      steps: a.steps,
      warmup: a.warmup,
      workers,
      onStep: (i) => {
        // the profile covers the timed steps only
        if (profiler && i === a.warmup - 1) profiler.reset();
      },
    });
  if (!a.peer) {
    // with no warm-up the profile starts at once; else it restarts after the last warm-up step
    profiler?.install();
    const r = await bench();
    profiler?.uninstall();
    printEngine(r, a, config, workersWhy);
    if (profiler) {
      const rows = profiler.rows();
      if (a.json) console.log(JSON.stringify({ kind: 'profile', steps: a.steps, kernels: rows }));
      else console.log(formatProfile(rows, a.steps));
    }
    return 0;
  }
  const engine: StepBenchResult[] = [];
  const peer: PeerResult[] = [];
  for (let i = 0; i < a.rounds; i++) {
    const e = await bench();
    engine.push(e);
    printEngine(e, a, config, workersWhy);
    const p = runPeer(config, a);
    peer.push(p);
    if (a.json) console.log(JSON.stringify({ kind: 'peer', ...p }));
    else
      console.log(
        `pytorch ${p.torch} (${p.blas}, ${p.threads} threads): ${p.img_per_s.toFixed(2)} images/s, ` +
          `${p.step_ms_median.toFixed(0)} ms/step, peak RSS ${p.peak_rss_mb.toFixed(0)} MB`,
      );
  }
  const med = (xs: number[]): number => {
    const s = [...xs].sort((x, y) => x - y);
    const h = Math.floor(s.length / 2);
    return s.length % 2 ? (s[h] as number) : ((s[h - 1] as number) + (s[h] as number)) / 2;
  };
  const e = med(engine.map((r) => r.img_per_s));
  const p = med(peer.map((r) => r.img_per_s));
  const summary = {
    kind: 'ratio',
    rounds: a.rounds,
    engine_img_per_s: round2(e),
    peer_img_per_s: round2(p),
    ratio: Math.round((e / p) * 1000) / 1000,
    peer_peak_rss_mb: round1(Math.max(...peer.map((r) => r.peak_rss_mb))),
  };
  if (a.json) console.log(JSON.stringify(summary));
  else
    console.log(
      `engine/PyTorch = ${summary.ratio.toFixed(3)} (${e.toFixed(2)} vs ${p.toFixed(2)} images/s, median over ` +
        `${a.rounds} alternating rounds); PyTorch peak RSS ${summary.peer_peak_rss_mb.toFixed(0)} MB`,
    );
  return 0;
}
