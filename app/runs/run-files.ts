// Files every training run keeps beside its weights: the optimizer state, the data stream's state, metrics.jsonl.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../engine/io/safetensors.js';
import type { AdamW } from '../../engine/optim/adamw.js';

/** Writes AdamW's moments (engine layout, flat) and step as `optimizer.safetensors` in a checkpoint folder. */
export function saveOptimizer(folder: string, opt: AdamW): void {
  const st = opt.exportState();
  const moments = new Map<string, TensorToWrite>();
  for (const [label, m] of [
    ['m', st.m],
    ['v', st.v],
  ] as const) {
    for (const [k, data] of m) moments.set(`${label}.${k}`, { dtype: 'F32', shape: [data.length], data });
  }
  writeSafetensors(nodePath.join(folder, 'optimizer.safetensors'), moments, { step: String(st.step) });
}

/** Restores what saveOptimizer wrote. */
export function loadOptimizer(folder: string, opt: AdamW): void {
  const o = SafetensorsFile.open(nodePath.join(folder, 'optimizer.safetensors'));
  try {
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    for (const k of o.keys()) (k.startsWith('m.') ? m : v).set(k.slice(2), o.readFloat32(k));
    opt.importState({ step: Number(o.metadata['step']), m, v });
  } finally {
    o.close();
  }
}

/** The data stream's state (`state.json`): step, epoch, cursor, the epoch's order, the Rng state. */
export function saveStreamState(folder: string, state: object): void {
  fs.writeFileSync(nodePath.join(folder, 'state.json'), JSON.stringify(state));
}

export function loadStreamState<T>(folder: string): T {
  return JSON.parse(fs.readFileSync(nodePath.join(folder, 'state.json'), 'utf8')) as T;
}

/** Appends one JSON line to RUN_DIR/metrics.jsonl. */
export function appendMetrics(dir: string, rec: object): void {
  fs.appendFileSync(nodePath.join(dir, 'metrics.jsonl'), `${JSON.stringify(rec)}\n`);
}

/** Keeps only the metrics of steps <= `step` (those after a checkpoint are computed again on resume). */
export function truncateMetrics(dir: string, step: number): void {
  const p = nodePath.join(dir, 'metrics.jsonl');
  if (!fs.existsSync(p)) return;
  const kept = fs
    .readFileSync(p, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => {
      try {
        return (JSON.parse(l) as { step: number }).step <= step;
      } catch {
        return false; // a line cut by the kill
      }
    });
  fs.writeFileSync(p, kept.map((l) => `${l}\n`).join(''));
}
