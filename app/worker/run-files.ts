// Files every training run keeps beside its weights (optimizer state, data stream state), the write-time guard
// against non-finite values, where a resume starts, and the clean-up of a run folder whose first step never ran.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../engine/io/safetensors.js';
import type { AdamW, AdamWState } from '../../engine/optim/adamw.js';
import { fromTorch, toTorch, type ParamSpec } from '../../engine/models/params.js';
import { checkpointName, removeTmpCheckpoints, type GoodCheckpoint } from '../runs/checkpoint.js';
import { scanGoodCheckpoints } from './checkpoints.js';
import { writeFileChecked, writing } from '../runs/disk.js';
import { RunLock } from '../runs/lock.js';
import { lastLoggedStep, metricsPath, readMetrics } from '../runs/metrics.js';

/**
 * `optimizer.safetensors`, version 2: AdamW's moments `m.NAME` and `v.NAME` in PyTorch layouts (each the shape of
 * its weight in model.safetensors, converted as the weights are), metadata `format_version` "2" and `step`. The
 * workbench and digpt_torch (scaleout/) both write it and read it. Version 1 (no `format_version`) held the moments
 * flat in the engine's own layout; it is still read.
 */
export const OPTIMIZER_FORMAT_VERSION = 2;

/** Writes AdamW's moments (version 2, PyTorch layouts) and step as `optimizer.safetensors` in a checkpoint folder. */
export function saveOptimizer(folder: string, st: AdamWState, specs: ReadonlyMap<string, ParamSpec>): void {
  const moments = new Map<string, TensorToWrite>();
  for (const [label, m] of [
    ['m', st.m],
    ['v', st.v],
  ] as const) {
    for (const [k, data] of m) {
      const s = specs.get(k);
      if (!s) throw new Error(`optimizer state names ${k}, which is no parameter of the model`);
      moments.set(`${label}.${k}`, { dtype: 'F32', shape: [...s.shape], data: toTorch(s, data) });
    }
  }
  const path = nodePath.join(folder, 'optimizer.safetensors');
  writing(path, () =>
    writeSafetensors(path, moments, {
      format_version: String(OPTIMIZER_FORMAT_VERSION),
      step: String(st.step),
    }),
  );
}

/** Restores what saveOptimizer wrote (version 2), or a version 1 file (flat, engine layout). */
export function loadOptimizer(folder: string, opt: AdamW, specs: ReadonlyMap<string, ParamSpec>): void {
  const path = nodePath.join(folder, 'optimizer.safetensors');
  const o = SafetensorsFile.open(path);
  try {
    const version = o.metadata['format_version'] ?? '1';
    if (version !== '1' && version !== '2')
      throw new Error(
        `${path}: optimizer format_version ${version} is not one this workbench reads (1 or 2)`,
      );
    const step = Number(o.metadata['step']);
    if (!Number.isInteger(step) || step < 0) throw new Error(`${path}: metadata step is not a step number`);
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    for (const k of o.keys()) {
      const into = k.startsWith('m.') ? m : k.startsWith('v.') ? v : undefined;
      if (!into) throw new Error(`${path}: unexpected key ${k} (moments are m.NAME and v.NAME)`);
      const name = k.slice(2);
      const data = o.readFloat32(k);
      if (version === '1') {
        into.set(name, data);
        continue;
      }
      const s = specs.get(name);
      if (!s) throw new Error(`${path}: ${k} names no parameter of the model`);
      const shape = o.entry(k).shape;
      if (shape.length !== s.shape.length || shape.some((d, i) => d !== s.shape[i]))
        throw new Error(
          `${path}: ${k} has shape [${shape.join(', ')}], the parameter has [${s.shape.join(', ')}]`,
        );
      into.set(name, fromTorch(s, data));
    }
    opt.importState({ step, m, v });
  } finally {
    o.close();
  }
}

/** The data stream's state (`state.json`): step, epoch, cursor, the epoch's order, the Rng state. */
export function saveStreamState(folder: string, state: object): void {
  writeFileChecked(nodePath.join(folder, 'state.json'), JSON.stringify(state));
}

export function loadStreamState<T>(folder: string): T {
  return JSON.parse(fs.readFileSync(nodePath.join(folder, 'state.json'), 'utf8')) as T;
}

// --- the write-time guard ---

/** A checkpoint would have held Inf or NaN: the run stops instead, keeping its last good checkpoint. */
export class NonFiniteStateError extends Error {
  constructor(step: number, what: string, value: number, lastGood: string | undefined) {
    super(
      `step ${step}: ${what} holds non-finite values (${value}); no checkpoint of step ${step} was written and the ` +
        `run stopped, keeping ${lastGood ? `its last good checkpoint ${lastGood}` : 'no checkpoint (none was written yet)'}` +
        ' (a lower --blr, or a longer warm-up, usually avoids it)',
    );
    this.name = 'NonFiniteStateError';
  }
}

/** The first non-finite entry among named float arrays, in order: its name and the value found. */
export function firstNonFinite(
  named: Iterable<readonly [string, Float32Array]>,
): { name: string; value: number } | undefined {
  for (const [name, x] of named) {
    for (let i = 0; i < x.length; i++) {
      const v = x[i] as number;
      if (!Number.isFinite(v)) return { name, value: v };
    }
  }
  return undefined;
}

/**
 * Checks what a checkpoint is about to hold (weights, then both AdamW moments) and throws NonFiniteStateError naming
 * the first tensor that is not finite. It reads the arrays the checkpoint writes, so it costs one pass over them
 * once per checkpoint, not per step.
 */
export function checkFiniteState(
  step: number,
  weights: ReadonlyMap<string, { readonly data: Float32Array }>,
  opt: AdamWState,
  lastGood: () => string | undefined,
): void {
  const checks: [string, Iterable<readonly [string, Float32Array]>][] = [
    ['weight', [...weights].map(([k, v]) => [k, v.data] as const)],
    ['AdamW first moment (m) of', opt.m],
    ['AdamW second moment (v) of', opt.v],
  ];
  for (const [what, named] of checks) {
    const bad = firstNonFinite(named);
    if (bad) throw new NonFiniteStateError(step, `${what} ${bad.name}`, bad.value, lastGood());
  }
}

// --- resume ---

/** Resume refused: no checkpoint can be trusted while the run has a history that restarting would throw away. */
export class NothingToResumeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NothingToResumeError';
  }
}

/**
 * Where a resume of run `dir` starts (call with the run's lock held). Leftover `.tmp-step-*` folders are removed;
 * every checkpoint rejected is reported through `warn` with its reason (checksum, missing manifest, non-finite values).
 * With no valid checkpoint, a run that has history (checkpoints that all failed, or steps in metrics.jsonl) is
 * refused and left untouched; one that never logged a step starts again from step 0 (returns undefined).
 */
export function resumePoint(dir: string, warn: (text: string) => void): GoodCheckpoint | undefined {
  const ckDir = nodePath.join(dir, 'checkpoints');
  for (const p of removeTmpCheckpoints(ckDir))
    warn(`removed ${p}, the leftover of an interrupted checkpoint write`);
  const { good, rejected } = scanGoodCheckpoints(ckDir);
  for (const r of rejected) warn(`checkpoint rejected: ${r}`);
  if (good) return good;
  const steps = lastLoggedStep(readMetrics(dir));
  if (rejected.length === 0 && steps === 0) return undefined;
  const why = rejected.length
    ? `none of its ${rejected.length} checkpoint(s) is usable (${rejected.join('; ')})`
    : `it has no checkpoint (it stopped before its first one)`;
  const kept =
    steps > 0 ? `${metricsPath(dir)} (steps up to ${steps}) is kept as it was` : 'nothing was changed';
  throw new NothingToResumeError(
    `cannot resume ${dir}: ${why}; ${kept}. Start a new run (another --out), or remove ${metricsPath(dir)} ` +
      `and ${ckDir} to train this one again from step 0`,
  );
}

// --- opening a run folder for writing ---

/** How a run folder is opened: the lock (taken here unless the caller holds it) and where warnings go. */
export interface RunOpenOptions {
  /** The run's lock, already held by the caller (a job takes it first); it stays the caller's to release. */
  readonly lock?: RunLock;
  /** What the lock says the holder runs. */
  readonly command?: string;
  /** Warnings: checkpoints rejected on resume, a stale lock taken over, leftovers removed. */
  readonly onWarn?: (text: string) => void;
  /**
   * The new run trains elsewhere (a scale-out bundle's step 0: digpt_torch on a cluster): its batch is not checked
   * against this backend's memory.
   */
  readonly trainsElsewhere?: boolean;
}

/** A run's lock as one opening holds it: taken by the opening (`owned`), or the caller's. */
export interface HeldLock {
  readonly lock: RunLock;
  readonly owned: boolean;
}

/** The lock for an opening of `dir`: the caller's, or taken now (RunLockedError when someone else writes the run). */
export function holdRunLock(dir: string, o: RunOpenOptions): HeldLock {
  if (o.lock) return { lock: o.lock, owned: false };
  const lock = RunLock.acquire(dir, {
    ...(o.command ? { command: o.command } : {}),
    ...(o.onWarn ? { onWarn: o.onWarn } : {}),
  });
  return { lock, owned: true };
}

/** Lets go of a lock the opening took (a caller's lock stays held). */
export function releaseHeld(held: HeldLock | undefined): void {
  if (held?.owned) held.lock.release();
}

/** Refuses `dir` when it already holds a run. */
export function refuseExistingRun(dir: string): void {
  if (fs.existsSync(nodePath.join(dir, 'config.json')))
    throw new Error(`${dir} already holds a run; use resume, or another --out`);
}

/**
 * Makes the folder of a new run: takes its lock, then writes config.json (refused if another process created a run
 * there meanwhile: checked again under the lock) and an empty metrics.jsonl. On failure the lock is let go and a
 * folder this call made is removed again.
 */
export function createRunFolder(dir: string, config: object, o: RunOpenOptions): HeldLock {
  const existed = fs.existsSync(dir);
  let held: HeldLock | undefined;
  try {
    fs.mkdirSync(dir, { recursive: true });
    held = holdRunLock(dir, o);
    refuseExistingRun(dir);
    writeFileChecked(nodePath.join(dir, 'config.json'), JSON.stringify(config, null, 2));
    const mpath = metricsPath(dir);
    writing(mpath, () => fs.writeFileSync(mpath, ''));
    return held;
  } catch (e) {
    releaseHeld(held);
    if (!existed) removeUnstartedRun(dir);
    throw e;
  }
}

// --- a run folder whose first step never ran ---

/**
 * Removes the run folder a job created when it failed before its first step: only if it holds nothing but what
 * creation and the step-0 evaluation wrote (config.json, a metrics.jsonl of step-0 lines only, their TensorBoard
 * event file, an empty checkpoints/), and no lock (no one else took it up).
 * Returns whether it was removed.
 */
export function removeUnstartedRun(dir: string): boolean {
  if (!fs.existsSync(dir)) return false;
  for (const name of fs.readdirSync(dir)) {
    const p = nodePath.join(dir, name);
    if (name === 'config.json') continue;
    if (name === 'metrics.jsonl' && onlyStepZero(p)) continue;
    if (name === 'checkpoints' && fs.statSync(p).isDirectory() && fs.readdirSync(p).length === 0) continue;
    // the TensorBoard mirror of metrics.jsonl's step-0 lines
    if (name.startsWith('events.out.tfevents.') && fs.statSync(p).isFile()) continue;
    // anything else (a lock, a checkpoint, a user's file) means the folder is not only ours to remove
    return false;
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return true;
}

/** Whether a metrics file holds only step-0 lines (the random encoder's evaluation), or nothing. */
function onlyStepZero(path: string): boolean {
  if (!fs.statSync(path).isFile()) return false;
  const lines = fs
    .readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  return lines.every((l) => {
    try {
      return (JSON.parse(l) as { step?: unknown }).step === 0;
    } catch {
      return false;
    }
  });
}

/** The folder the checkpoint of `step` is (or will be) written to. */
export function checkpointFolder(dir: string, step: number): string {
  return nodePath.join(dir, 'checkpoints', checkpointName(step));
}
