// Runs a pretraining job (new, imported or resumed) step by step, reporting through `emit`; shared by every host.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { getPreset } from '../../engine/config.js';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import { fileSource, loadDigptOfficial } from '../../engine/models/naming.js';
import { cacheSideFor, loadSplit, scanDataset } from '../datasets/index.js';
import { PretrainRun, type ImageSet, type PretrainConfig } from '../train/pretrain-run.js';
import type { JobSpec, PretrainJob, WorkerEvent } from './protocol.js';

/** Event without its sequence number (the host numbers them). */
export type JobEvent = WorkerEvent extends infer E
  ? E extends { seq: number }
    ? Omit<E, 'seq'>
    : never
  : never;

/** Pause/stop requests from the host, read between steps. */
export interface JobControl {
  paused: boolean;
  stopping: boolean;
}

/** Where decoded images are cached: DIGPT_CACHE, else ~/.cache/digpt-workbench. */
export function cacheDir(): string {
  return process.env['DIGPT_CACHE'] ?? nodePath.join(os.homedir(), '.cache', 'digpt-workbench');
}

const OBJECTIVES = ['digpt', 'gen-only', 'dis-only'] as const;

/** The training split of a dataset folder, decoded to `side` px through the cache. */
export async function loadTrainImages(
  data: string,
  side: number,
  emit: (e: JobEvent) => void,
): Promise<ImageSet> {
  if (!fs.existsSync(data)) throw new Error(`dataset folder ${data} does not exist`);
  const scan = await scanDataset(data);
  for (const s of scan.skipped) emit({ type: 'log', level: 'warn', text: `skipped ${s.path}: ${s.reason}` });
  const split = scan.splits.find((s) => s.name === 'train') ?? scan.splits[0];
  if (!split) throw new Error(`dataset ${data} has no images`);
  const loaded = await loadSplit(scan, split.name, {
    side,
    cacheDir: nodePath.join(cacheDir(), 'images'),
    onProgress: (done, total) => emit({ type: 'progress', phase: 'loading images', done, total }),
  });
  if (loaded.count === 0) throw new Error(`dataset ${data}: the ${split.name} split has no readable images`);
  return { count: loaded.count, side: loaded.side, pixels: loaded.images };
}

function pretrainConfig(job: PretrainJob, count: number): Omit<PretrainConfig, 'kind'> {
  const preset = getPreset(job.preset);
  if (!(OBJECTIVES as readonly string[]).includes(job.objective)) {
    throw new Error(`unknown objective '${job.objective}'; use one of ${OBJECTIVES.join(', ')}`);
  }
  const perStep = job.batch * job.accum;
  const stepsPerEpoch = Math.max(1, Math.floor(count / perStep));
  const steps = job.steps ?? Math.max(1, Math.round((job.epochs ?? 1) * stepsPerEpoch));
  return {
    data: nodePath.resolve(job.data),
    preset: job.preset,
    model: preset.model,
    teacher: job.teacher === 'pixels' ? 'pixels' : nodePath.resolve(job.teacher),
    objective: job.objective as PretrainConfig['objective'],
    steps,
    batch: job.batch,
    accum: job.accum,
    seed: job.seed,
    blr: job.blr,
    min_lr: 0,
    warmup_steps: Math.max(1, Math.round(steps * 0.1)),
    weight_decay: 0.05,
    checkpoint_every: job.checkpointEvery,
  };
}

/** Runs a job to its end (or a stop request); throws on failure with a message naming the cause. */
export async function runJob(job: JobSpec, emit: (e: JobEvent) => void, control: JobControl): Promise<void> {
  let run: PretrainRun;
  if (job.kind === 'pretrain') {
    const preset = getPreset(job.preset);
    const images = await loadTrainImages(job.data, cacheSideFor(preset.model.img_size), emit);
    run = PretrainRun.create(nodePath.resolve(job.out), pretrainConfig(job, images.count), images);
    if (job.init) {
      const f = SafetensorsFile.open(job.init);
      try {
        loadDigptOfficial(run.model, fileSource(f));
      } finally {
        f.close();
      }
      // the imported weights are the run's start: a resume must find them
      run.save();
      emit({ type: 'log', level: 'info', text: `started from ${job.init} (official D-iGPT names)` });
    }
  } else {
    const cpath = nodePath.join(job.run, 'config.json');
    if (!fs.existsSync(cpath)) throw new Error(`${job.run}: no config.json; not a run folder`);
    const config = JSON.parse(fs.readFileSync(cpath, 'utf8')) as PretrainConfig;
    const images = await loadTrainImages(config.data, cacheSideFor(config.model.img_size), emit);
    run = PretrainRun.resume(job.run, images);
  }
  try {
    emit({
      type: 'run',
      dir: run.dir,
      startStep: run.step,
      totalSteps: run.config.steps,
      clustersPerSide: run.config.model.clusters_per_side,
    });
    while (run.step < run.config.steps && !control.stopping) {
      if (control.paused) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      const before = run.step;
      run.runSteps(1, (record, m) =>
        emit({ type: 'step', record, order: m.order, clusterError: m.clusterError }),
      );
      if (run.step % run.config.checkpoint_every === 0 || run.step === run.config.steps) {
        emit({
          type: 'checkpoint',
          folder: nodePath.join(run.checkpointDir, `step-${String(run.step).padStart(8, '0')}`),
          step: run.step,
        });
      }
      if (run.step === before) break;
      // let pause/stop messages in between steps
      await new Promise((r) => setImmediate(r));
    }
    if (control.stopping && run.step < run.config.steps) {
      const folder = run.save();
      emit({ type: 'checkpoint', folder, step: run.step });
    }
    emit({
      type: 'done',
      dir: run.dir,
      step: run.step,
      stopped: control.stopping && run.step < run.config.steps,
    });
  } finally {
    run.dispose();
  }
}
