// The worker's view of checkpoints: verified down to their values (every float tensor finite), which needs the engine's
// safetensors reader; app/runs/checkpoint.ts checks manifests and checksums for everyone.
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import {
  latestGoodCheckpoint,
  runModelFile,
  scanCheckpoints,
  type GoodCheckpoint,
} from '../runs/checkpoint.js';

/** The first non-finite value of each float tensor of a safetensors file, as a reason; undefined when all are finite. */
export function nonFiniteIn(path: string): string | undefined {
  const f = SafetensorsFile.open(path);
  try {
    for (const k of f.keys()) {
      if (f.entry(k).dtype === 'I64' || f.entry(k).dtype === 'I32') continue;
      const x = f.readFloat32(k);
      for (let i = 0; i < x.length; i++) {
        const v = x[i] as number;
        if (!Number.isFinite(v)) return `${path}: ${k} holds non-finite values (${v} at index ${i})`;
      }
    }
    return undefined;
  } finally {
    f.close();
  }
}

/**
 * The newest checkpoint of `dir` that verifies, values included. `modelOnly`: for reading its weights (export, an
 * encoder source), where a synced copy of a cluster run may lack the optimizer file.
 */
export function goodCheckpoint(dir: string, modelOnly = false): GoodCheckpoint | undefined {
  return latestGoodCheckpoint(dir, nonFiniteIn, modelOnly);
}

/** scanCheckpoints with the values checked. */
export function scanGoodCheckpoints(dir: string): ReturnType<typeof scanCheckpoints> {
  return scanCheckpoints(dir, nonFiniteIn);
}

/** The model file behind an encoder source (a run folder's newest good checkpoint, values included, or a file). */
export function sourceFile(spec: string): string {
  return runModelFile(spec, nonFiniteIn);
}
