// `digpt scaleout`: a pretraining run handed to PyTorch DDP (scaleout/digpt_torch) as a small bundle: the run with a
// `scaleout` block, its newest good checkpoint, the resolved teacher, a dataset manifest that references the images,
// the launch files and the trainer. Everything is checked before anything is written; the bundle appears whole.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import type { DatasetScan, SplitSource } from '../datasets/index.js';
import { checkpointName, type GoodCheckpoint } from '../runs/checkpoint.js';
import { parseRunConfig, readRunConfig, type PretrainConfig } from '../runs/config.js';
import { writeFileChecked } from '../runs/disk.js';
import { metricsPath, parseMetrics } from '../runs/metrics.js';
import { goodCheckpoint } from './checkpoints.js';

/** Where the trainer and the launch templates are in the install (the repository, or the packaged app). */
export const SCALEOUT_DIR = nodePath.resolve(import.meta.dirname, '..', '..', 'scaleout');

export interface ScaleoutOptions {
  readonly nodes: number;
  readonly gpusPerNode: number;
  /** Where the dataset folder is on the cluster (default: where it is here). */
  readonly dataRoot?: string;
  readonly onProgress?: (phase: string, done: number, total: number) => void;
}

/** The `scaleout` block of a bundled run's config.json (app/runs/config.ts checks it). */
export interface ScaleoutBlock {
  readonly nodes: number;
  readonly gpus_per_node: number;
  readonly world_size: number;
  readonly per_rank_batch: number;
  readonly precision: 'fp32';
  readonly tf32: false;
  readonly teacher_file: string | null;
  readonly dataset: string;
}

/** A bundle that cannot be made as asked: the message says what to change; nothing was written. */
export class ScaleoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScaleoutError';
  }
}

/** Checks the launch shape against the run: world size = nodes x GPUs per node, the batch divides over the ranks. */
export function launchShape(
  config: Pick<PretrainConfig, 'batch'>,
  nodes: number,
  gpusPerNode: number,
): { worldSize: number; perRankBatch: number } {
  for (const [flag, v] of [
    ['--nodes', nodes],
    ['--gpus-per-node', gpusPerNode],
  ] as const)
    if (!Number.isInteger(v) || v < 1 || v > 4096)
      throw new ScaleoutError(`${flag} must be an integer from 1 to 4096, got ${v}`);
  const worldSize = nodes * gpusPerNode;
  if (config.batch % worldSize !== 0)
    throw new ScaleoutError(
      `the run's batch ${config.batch} does not divide over ${worldSize} ranks (${nodes} node(s) x ${gpusPerNode} ` +
        `GPU(s)); use a batch that is a multiple of ${worldSize}, or another number of GPUs`,
    );
  return { worldSize, perRankBatch: config.batch / worldSize };
}

function sha256(path: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** The training split the run trains on (as run-job picks it: `train`, else the first split). */
export function trainSplit(scan: DatasetScan): { name: string; source: SplitSource } {
  const s = scan.splits.find((x) => x.name === 'train') ?? scan.splits[0];
  if (!s) throw new ScaleoutError(`dataset ${scan.root} has no images`);
  return { name: s.name, source: s.source };
}

/**
 * dataset.json: the training split's source exactly as the workbench reads it (same example order), and every file
 * it references with its size and sha256 (the trainer checks them). The images are referenced, never copied.
 */
export function datasetManifest(
  scan: DatasetScan,
  o: Pick<ScaleoutOptions, 'dataRoot' | 'onProgress'>,
): object {
  const { name, source } = trainSplit(scan);
  const rel = source.kind === 'idx' ? [source.images, source.labels] : source.items.map((item) => item.path);
  const files: Record<string, { bytes: number; sha256: string }> = {};
  rel.forEach((r, i) => {
    const abs = nodePath.join(scan.root, r);
    let st: fs.Stats;
    try {
      st = fs.statSync(abs);
    } catch {
      throw new ScaleoutError(`dataset file ${abs} is gone since the run started (the bundle references it)`);
    }
    if (!st.isFile()) throw new ScaleoutError(`dataset file ${abs} is not a regular file`);
    files[r] = { bytes: st.size, sha256: sha256(abs) };
    o.onProgress?.('hashing the dataset files', i + 1, rel.length);
  });
  return {
    format: 'digpt-dataset-manifest',
    version: 1,
    root: o.dataRoot ?? scan.root,
    classes: scan.classes,
    split: name,
    source,
    files,
  };
}

/** Fills a launch template's @NAME@ placeholders; a placeholder left unknown is an error (a template bug). */
export function fillTemplate(text: string, values: Readonly<Record<string, string>>, label: string): string {
  return text.replace(/@([A-Z_]+)@/g, (all, key: string) => {
    const v = values[key];
    if (v === undefined) throw new Error(`${label}: unknown placeholder ${all}`);
    return v;
  });
}

function copyTree(src: string, dst: string, skip: (name: string) => boolean): void {
  fs.mkdirSync(dst, { recursive: true });
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    if (skip(e.name)) continue;
    const s = nodePath.join(src, e.name);
    const d = nodePath.join(dst, e.name);
    if (e.isDirectory()) copyTree(s, d, skip);
    else if (e.isFile()) fs.copyFileSync(s, d);
  }
}

/** A stage folder beside `out`, renamed into place when whole (a kill leaves only a `.tmp-` folder to delete). */
export function stageFor(out: string): string {
  const abs = nodePath.resolve(out);
  if (fs.existsSync(abs)) throw new ScaleoutError(`${abs} already exists; give another --out`);
  const parent = nodePath.dirname(abs);
  if (!fs.existsSync(parent)) throw new ScaleoutError(`the folder ${parent} (of --out) does not exist`);
  return nodePath.join(parent, `.tmp-${nodePath.basename(abs)}-${process.pid}-${Date.now()}`);
}

/**
 * Writes the bundle of the pretraining run `runDir` into `stage`, then renames it to `out`. `runDir` may already be
 * `stage/run` (a new run made for the bundle, `digpt scaleout --data ...`). Returns what was bundled.
 */
export function writeBundle(
  runDir: string,
  scan: DatasetScan,
  stage: string,
  out: string,
  o: ScaleoutOptions,
): { path: string; step: number; worldSize: number; perRankBatch: number; files: number } {
  const config = readRunConfig(runDir);
  if (config.kind !== 'pretrain')
    throw new ScaleoutError(
      `${runDir} is a ${config.kind} run; only pretraining runs are handed to digpt_torch`,
    );
  const { worldSize, perRankBatch } = launchShape(config, o.nodes, o.gpusPerNode);
  if (config.teacher !== 'pixels') {
    if (!fs.existsSync(config.teacher))
      throw new ScaleoutError(`the run's teacher ${config.teacher} is gone`);
    SafetensorsFile.open(config.teacher).close(); // a teacher that is no safetensors file is refused here
  }
  const ck: GoodCheckpoint | undefined = goodCheckpoint(nodePath.join(runDir, 'checkpoints'));
  const manifest = datasetManifest(scan, o);
  const templates = nodePath.join(SCALEOUT_DIR, 'launch-templates');
  if (!fs.existsSync(nodePath.join(SCALEOUT_DIR, 'digpt_torch')) || !fs.existsSync(templates))
    throw new Error(`the trainer is missing from this install (${SCALEOUT_DIR})`);

  const inStage = nodePath.resolve(runDir).startsWith(nodePath.resolve(stage) + nodePath.sep);
  fs.mkdirSync(stage, { recursive: true });
  try {
    const run = nodePath.join(stage, 'run');
    const block: ScaleoutBlock = {
      nodes: o.nodes,
      gpus_per_node: o.gpusPerNode,
      world_size: worldSize,
      per_rank_batch: perRankBatch,
      precision: 'fp32',
      tf32: false,
      teacher_file: config.teacher === 'pixels' ? null : 'teacher.safetensors',
      dataset: 'dataset.json',
    };
    const bundled = { ...config, scaleout: block };
    // written as it will be read back by digpt resume
    parseRunConfig(bundled, nodePath.join(run, 'config.json'));
    if (!inStage) {
      fs.mkdirSync(nodePath.join(run, 'checkpoints'), { recursive: true });
      const step = ck?.manifest.step ?? 0;
      const text = fs.existsSync(metricsPath(runDir)) ? fs.readFileSync(metricsPath(runDir), 'utf8') : '';
      // the lines up to the checkpoint's step: those after it are trained again
      const kept = parseMetrics(text).records.filter(
        (r) => typeof r.record.step === 'number' && r.record.step <= step,
      );
      fs.writeFileSync(metricsPath(run), kept.map((r) => `${r.line}\n`).join(''));
      if (ck) copyTree(ck.folder, nodePath.join(run, 'checkpoints', checkpointName(step)), () => false);
    }
    writeFileChecked(nodePath.join(run, 'config.json'), JSON.stringify(bundled, null, 2));
    if (config.teacher !== 'pixels')
      fs.copyFileSync(config.teacher, nodePath.join(stage, 'teacher.safetensors'));
    writeFileChecked(nodePath.join(stage, 'dataset.json'), JSON.stringify(manifest));
    copyTree(
      nodePath.join(SCALEOUT_DIR, 'digpt_torch'),
      nodePath.join(stage, 'digpt_torch'),
      (n) => n === '__pycache__' || n.endsWith('.pyc'),
    );
    // the placeholders of scaleout/launch-templates/ (each file's header says what they mean); the Slurm time limit
    // and CPUs per rank are defaults to edit in the bundle
    const values = {
      NODES: String(o.nodes),
      GPUS_PER_NODE: String(o.gpusPerNode),
      WORLD_SIZE: String(worldSize),
      PER_RANK_BATCH: String(perRankBatch),
      DATA_ROOT: o.dataRoot ?? '',
      JOB_NAME: `digpt-${nodePath.basename(nodePath.resolve(out))}`.replace(/[^A-Za-z0-9._-]/g, '_'),
      CPUS_PER_GPU: '8',
      TIME_LIMIT: '24:00:00',
      LOCAL_NPROC: '1',
      PYTHON: '',
    };
    fs.mkdirSync(nodePath.join(stage, 'launch'));
    for (const name of fs.readdirSync(templates).sort()) {
      const target = nodePath.join(stage, 'launch', name);
      fs.writeFileSync(
        target,
        fillTemplate(fs.readFileSync(nodePath.join(templates, name), 'utf8'), values, name),
      );
      fs.chmodSync(target, 0o755);
    }
    const bundle = {
      format: 'digpt-scaleout-bundle',
      version: 1,
      created: new Date().toISOString(),
      source_run: inStage ? null : nodePath.resolve(runDir),
      step: ck?.manifest.step ?? 0,
      nodes: o.nodes,
      gpus_per_node: o.gpusPerNode,
      world_size: worldSize,
      per_rank_batch: perRankBatch,
    };
    writeFileChecked(nodePath.join(stage, 'bundle.json'), JSON.stringify(bundle, null, 2));
    fs.renameSync(stage, out);
    return {
      path: out,
      step: bundle.step,
      worldSize,
      perRankBatch,
      files: Object.keys((manifest as { files: object }).files).length,
    };
  } catch (e) {
    fs.rmSync(stage, { recursive: true, force: true });
    throw e;
  }
}
