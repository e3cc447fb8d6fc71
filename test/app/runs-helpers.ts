// Shared by the runs-*.test.ts files: the real `digpt` command in a temporary workspace, small runs, metrics lines.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import { getPreset } from '../../engine/config.js';
import { Rng } from '../../engine/rng.js';
import type { ImageSet } from '../../app/worker/pretrain-run.js';

export const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');
export const BIN = nodePath.join(ROOT, 'bin', 'digpt.js');

/** A temporary folder with its own decode cache and workspace, so the CLI touches nothing of the user's. */
export function sandbox(prefix: string): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), prefix));
  const env = {
    ...process.env,
    DIGPT_CACHE: nodePath.join(dir, 'cache'),
    DIGPT_WORKSPACE: nodePath.join(dir, 'ws'),
  };
  return { dir, env };
}

export function digpt(
  box: { dir: string; env: NodeJS.ProcessEnv },
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
) {
  return spawnSync(process.execPath, [BIN, ...args], {
    cwd: box.dir,
    env: { ...box.env, ...extraEnv },
    encoding: 'utf8',
  });
}

export function spawnDigpt(box: { dir: string; env: NodeJS.ProcessEnv }, args: string[]): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { cwd: box.dir, env: box.env });
}

/** Resolves once `child` has exited, with its exit code (null when a signal ended it) and its output. */
export function exited(
  child: ChildProcess,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Resolves when the child's stdout matches `when` (or it exits first: then false). */
export function untilOutput(child: ChildProcess, when: RegExp): Promise<boolean> {
  return new Promise((resolve) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      if (when.test(buf)) resolve(true);
    });
    child.once('exit', () => resolve(false));
  });
}

/** A small pretraining run on the built-in sample: fast steps, one thread (the numbers do not matter here). */
export const TRAIN = [
  '--data',
  BUILTIN_SAMPLE_DIR,
  '--preset',
  'digpt-micro-32',
  '--teacher',
  'pixels',
  '--batch',
  '8',
  '--accum',
  '1',
  '--blr',
  '0.01',
  '--seed',
  '3',
  '--workers',
  '1',
];

/** The records of a run's metrics.jsonl that parse (a line cut by a kill is left out). */
export function metricLines(run: string): { step: number; loss?: number }[] {
  return fs
    .readFileSync(nodePath.join(run, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as { step: number; loss?: number }];
      } catch {
        return [];
      }
    });
}

/** Steps of the training lines (those with a loss), in file order. */
export function trainedSteps(run: string): number[] {
  return metricLines(run)
    .filter((r) => typeof r.loss === 'number')
    .map((r) => r.step);
}

/** Random images for in-process runs. */
export function images(count: number, side: number, seed: number): ImageSet {
  const rng = new Rng(seed);
  const pixels = new Uint8Array(count * side * side * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = rng.int(256);
  return { count, side, pixels };
}

/** An in-process pretraining config on digpt-micro-32 (pixel targets). */
export const MICRO = {
  data: 'synthetic',
  preset: 'digpt-micro-32',
  model: getPreset('digpt-micro-32').model,
  teacher: 'pixels',
  objective: 'digpt' as const,
  steps: 6,
  batch: 3,
  accum: 1,
  seed: 5,
  blr: 1.5e-3,
  min_lr: 0,
  warmup_steps: 2,
  weight_decay: 0.05,
  checkpoint_every: 2,
};

/** A process id that is certainly not running: a child that has already exited. */
export function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  return Number(r.stdout);
}
