// Runs a job (pretrain, import, fine-tune, resume, probe, k-NN) step by step, reporting through `emit`; shared by every host.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { KNN_DEFAULTS, PRETRAIN_DEFAULTS, PRETRAIN_RECIPE, PROBE_DEFAULTS } from '../api/run-kinds.js';
import { getPreset, resolveDigptConfig, type DigptConfig } from '../../engine/config.js';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import { PRETRAIN_OBJECTIVES, isPretrainObjective } from '../../engine/models/factory.js';
import { fileSource, loadDigptOfficial } from '../../engine/models/naming.js';
import { VitClassifier } from '../../engine/models/vit.js';
import { autoWorkers } from '../../engine/parallel/data-parallel.js';
import { currentBackend } from '../../engine/train/memory.js';
import { cacheSideFor, loadSplit, scanDataset, type DatasetScan, type SplitName } from '../datasets/index.js';
import { sourceFile } from './checkpoints.js';
import { knn, probe } from './evaluate.js';
import { FinetuneRun, exportClassifier, vitConfigOfDigpt, type LabelledImageSet } from './finetune-run.js';
import { PretrainRun, type KnnSets } from './pretrain-run.js';
import { checkJobSpec, checkWorkersBackend, readRunConfig, type PretrainConfig } from '../runs/config.js';
import { exportRun } from './export.js';
import { launchShape, stageFor, writeBundle } from './scaleout.js';
import { RunLock } from '../runs/lock.js';
import { onEventFileWarning } from '../runs/tensorboard.js';
import { removeUnstartedRun, type RunOpenOptions } from './run-files.js';
import type { EvalJob, FinetuneJob, JobSpec, PretrainJob, WorkerEvent } from '../jobs/protocol.js';
import { cacheDir } from '../workspace.js';
import { BUILTIN_TEACHER } from '../teachers/index.js';

/** A job's teacher as config.json records it: 'pixels', the built-in teacher's file for 'builtin', or a file. */
function teacherSpec(t: string): string {
  if (t === 'pixels') return 'pixels';
  return t === 'builtin' ? BUILTIN_TEACHER : nodePath.resolve(t);
}

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

type Emit = (e: JobEvent) => void;

async function scan(data: string, emit: Emit): Promise<DatasetScan> {
  if (!fs.existsSync(data)) throw new Error(`dataset folder ${data} does not exist`);
  const s = await scanDataset(data);
  for (const k of s.skipped) emit({ type: 'log', level: 'warn', text: `skipped ${k.path}: ${k.reason}` });
  if (s.splits.length === 0) throw new Error(`dataset ${data} has no images`);
  return s;
}

/** One split decoded to `side` px through the cache, with its labels (-1 when unlabelled). */
async function loadImages(
  s: DatasetScan,
  split: SplitName,
  side: number,
  emit: Emit,
): Promise<LabelledImageSet> {
  const loaded = await loadSplit(s, split, {
    side,
    cacheDir: nodePath.join(cacheDir(), 'images'),
    onProgress: (done, total) => emit({ type: 'progress', phase: `loading ${split} images`, done, total }),
  });
  for (const k of loaded.skipped)
    emit({ type: 'log', level: 'warn', text: `skipped ${k.path}: ${k.reason}` });
  for (const w of loaded.warnings) emit({ type: 'log', level: 'warn', text: w });
  if (loaded.count === 0) throw new Error(`dataset ${s.root}: the ${split} split has no readable images`);
  return {
    count: loaded.count,
    side: loaded.side,
    pixels: loaded.images,
    labels: loaded.labels,
    classes: loaded.classes,
  };
}

/** Train and validation splits of a labelled dataset (classification needs labels and a val split). */
async function labelledSplits(
  data: string,
  side: number,
  emit: Emit,
): Promise<{ train: LabelledImageSet; val: LabelledImageSet }> {
  const s = await scan(data, emit);
  if (s.classes.length < 2)
    throw new Error(`dataset ${data} is unlabelled (needs class folders or IDX labels)`);
  if (!s.splits.some((x) => x.name === 'val')) throw new Error(`dataset ${data} has no validation split`);
  const train = await loadImages(s, 'train', side, emit);
  const val = await loadImages(s, 'val', side, emit);
  return { train, val };
}

/** Input resolution of an encoder source: a run's config, a file's metadata, or a preset for 'scratch'. */
function sourceImgSize(from: string, preset?: string): number {
  if (from === 'scratch') {
    if (!preset) throw new Error("fine-tuning from 'scratch' needs --preset (the architecture)");
    return getPreset(preset).model.img_size;
  }
  const dir = fs.existsSync(from) && fs.statSync(from).isDirectory();
  if (dir) return readRunConfig(from).model.img_size;
  const f = SafetensorsFile.open(sourceFile(from));
  try {
    const raw = f.metadata['config'];
    if (raw) return (JSON.parse(raw) as { img_size: number }).img_size;
  } finally {
    f.close();
  }
  if (preset) return getPreset(preset).model.img_size;
  throw new Error(`${from}: its metadata has no config; give --preset for its architecture`);
}

/** The preset's model, at another input size when the job asks (checked: the error names the sizes). */
function jobModel(job: PretrainJob): DigptConfig {
  const preset = getPreset(job.preset);
  return job.img_size === undefined
    ? preset.model
    : resolveDigptConfig({ ...preset.model, img_size: job.img_size });
}

/** The job's settings resolved (the PRETRAIN table's defaults, the recipe) into what config.json records. */
function pretrainConfig(job: PretrainJob, count: number, workers: 1 | 2): Omit<PretrainConfig, 'kind'> {
  const D = PRETRAIN_DEFAULTS;
  const objective = job.objective ?? D.objective;
  if (!isPretrainObjective(objective)) {
    throw new Error(`unknown objective '${objective}'; use one of ${PRETRAIN_OBJECTIVES.join(', ')}`);
  }
  const batch = job.batch ?? D.batch;
  const accum = job.accum ?? D.accum;
  const stepsPerEpoch = Math.max(1, Math.floor(count / (batch * accum)));
  const steps = job.steps ?? Math.max(1, Math.round((job.epochs ?? D.epochs) * stepsPerEpoch));
  return {
    data: nodePath.resolve(job.data),
    preset: job.preset,
    model: jobModel(job),
    teacher: teacherSpec(job.teacher),
    objective,
    steps,
    batch,
    accum,
    seed: job.seed ?? D.seed,
    blr: job.blr ?? D.blr,
    min_lr: PRETRAIN_RECIPE.min_lr,
    warmup_steps: Math.max(1, Math.round(steps * PRETRAIN_RECIPE.warmup_share)),
    weight_decay: PRETRAIN_RECIPE.weight_decay,
    checkpoint_every: job.checkpoint_every ?? D.checkpoint_every,
    ...(workers > 1 ? { workers } : {}),
  };
}

async function trainLoop(
  run: PretrainRun | FinetuneRun,
  step: () => Promise<void>,
  emit: Emit,
  control: JobControl,
  total: number,
): Promise<void> {
  while (run.step < total && !control.stopping) {
    if (control.paused) {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    const before = run.step;
    await step();
    if (run.step === before) break;
    // let pause/stop messages in between steps
    await new Promise((r) => setImmediate(r));
  }
  if (control.stopping && run.step < total) {
    const folder = await run.save();
    emit({ type: 'checkpoint', folder, step: run.step });
  }
  emit({ type: 'done', dir: run.dir, step: run.step, stopped: control.stopping && run.step < total });
}

/**
 * The images a pretraining run trains on, and (for a labelled dataset with a validation split) the sets its
 * per-epoch k-NN uses; the train images are decoded once for both.
 */
async function pretrainData(
  data: string,
  side: number,
  emit: Emit,
): Promise<{ train: LabelledImageSet; evalSets?: KnnSets }> {
  const s = await scan(data, emit);
  const split = s.splits.find((x) => x.name === 'train') ?? (s.splits[0] as { name: SplitName });
  const train = await loadImages(s, split.name, side, emit);
  const labelled = s.classes.length >= 2 && split.name === 'train' && s.splits.some((x) => x.name === 'val');
  if (!labelled) return { train };
  return { train, evalSets: { train, val: await loadImages(s, 'val', side, emit) } };
}

async function runPretrain(
  run: PretrainRun,
  evalSets: KnnSets | undefined,
  emit: Emit,
  control: JobControl,
): Promise<void> {
  await run.startWorkers();
  try {
    await runPretrainSteps(run, evalSets, emit, control);
  } finally {
    await run.stopWorkers();
  }
}

async function runPretrainSteps(
  run: PretrainRun,
  evalSets: KnnSets | undefined,
  emit: Emit,
  control: JobControl,
): Promise<void> {
  const c = run.config;
  const first = evalSets ? await run.evaluateOn(evalSets) : undefined;
  if (first) emit({ type: 'eval', record: { ...first } });
  emit({
    type: 'run',
    dir: run.dir,
    startStep: run.step,
    totalSteps: c.steps,
    clustersPerSide: c.model.clusters_per_side,
  });
  await trainLoop(
    run,
    async () => {
      const written = await run.runSteps(
        1,
        (record, m) =>
          emit({
            type: 'step',
            record,
            order: m.order,
            clusterError: m.clusterError,
            ...(run.samples ? { samples: run.samples } : {}),
          }),
        (record) => emit({ type: 'eval', record: { ...record } }),
      );
      for (const folder of written) emit({ type: 'checkpoint', folder, step: run.step });
    },
    emit,
    control,
    c.steps,
  );
}

async function runFinetune(run: FinetuneRun, emit: Emit, control: JobControl): Promise<void> {
  emit({ type: 'run', dir: run.dir, startStep: run.step, totalSteps: run.config.steps, clustersPerSide: 0 });
  await trainLoop(
    run,
    async () => {
      const written = await run.runSteps(
        1,
        (record) => emit({ type: 'step', record }),
        (ev) => emit({ type: 'eval', record: { ...ev } as Record<string, number | string> }),
      );
      for (const folder of written) emit({ type: 'checkpoint', folder, step: run.step });
    },
    emit,
    control,
    run.config.steps,
  );
}

async function startFinetune(job: FinetuneJob, emit: Emit): Promise<FinetuneRun> {
  const side = cacheSideFor(sourceImgSize(job.from, job.preset));
  const { train, val } = await labelledSplits(job.data, side, emit);
  // the settings keep config.json's names from the job to the run; FinetuneRun.create resolves the defaults
  const { kind: _kind, data, out, preset, ...settings } = job;
  return FinetuneRun.create(
    nodePath.resolve(out),
    { ...settings, data, ...(preset ? { preset } : {}) },
    train,
    val,
    openOptions(job, emit),
  );
}

async function runEval(job: EvalJob, emit: Emit): Promise<void> {
  const side = cacheSideFor(sourceImgSize(job.source));
  const { train, val } = await labelledSplits(job.data, side, emit);
  emit({ type: 'progress', phase: 'features', done: 0, total: 1 });
  const result =
    job.kind === 'knn'
      ? await knn(job.source, train, val, { k: job.k ?? KNN_DEFAULTS.k })
      : await probe(job.source, train, val, {
          seed: job.seed ?? PROBE_DEFAULTS.seed,
          epochs: job.epochs ?? PROBE_DEFAULTS.epochs,
        });
  const out: Record<string, number | string> = {
    kind: job.kind,
    top1: result.top1,
    dim: result.dim,
    train: train.count,
    val: val.count,
  };
  if ('train_top1' in result) out['train_top1'] = result.train_top1;
  if ('k' in result) out['k'] = result.k;
  emit({ type: 'result', result: out });
  emit({ type: 'done', dir: '', step: 0, stopped: false });
}

/**
 * The command line of the process running this job, for the lock: a worker thread's own argv names only its boot
 * script, so Linux's /proc/self/cmdline (the process's) is read where it exists.
 */
function processCommand(): string {
  try {
    return fs.readFileSync('/proc/self/cmdline', 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return [process.argv0, ...process.argv.slice(1)].join(' ');
  }
}

/** How a job opens a run folder: what its lock says it runs, and where warnings go. */
function openOptions(job: JobSpec, emit: Emit): RunOpenOptions {
  return {
    command: `digpt ${job.kind} job in: ${processCommand()}`,
    onWarn: (text) => emit({ type: 'log', level: 'warn', text }),
  };
}

/** The threads a pretraining job trains with: 'auto' decided by the backend, 2 refused off wasm. */
function jobWorkers(job: PretrainJob, emit: Emit): 1 | 2 {
  const asked = job.workers ?? PRETRAIN_DEFAULTS.workers;
  if (asked === 'auto') {
    const auto = autoWorkers();
    emit({ type: 'log', level: 'info', text: `training threads: ${auto.workers} (auto: ${auto.why})` });
    return auto.workers;
  }
  const workers = asked === 2 ? 2 : 1;
  checkWorkersBackend(workers, currentBackend(), '--workers');
  return workers;
}

/**
 * Runs `train` on a run this job created, removing the run's folder when the job fails before its first step
 * (bad teacher, first-step error): a folder holding nothing but its config is no run. Anything more is kept.
 */
async function trainNewRun(
  run: PretrainRun | FinetuneRun,
  created: boolean,
  emit: Emit,
  train: () => Promise<void>,
): Promise<void> {
  let failed = true;
  try {
    await train();
    failed = false;
  } finally {
    const unstarted = failed && run.step === 0;
    run.dispose();
    if (unstarted && created && removeUnstartedRun(run.dir))
      emit({ type: 'log', level: 'info', text: `removed ${run.dir}: the run failed before its first step` });
  }
}

/** Runs a job to its end (or a stop request); throws on failure with a message naming the cause. */
export async function runJob(job: JobSpec, emit: Emit, control: JobControl): Promise<void> {
  // a UI or CLI bug must not start a run with batch 0: the same bounds as the flags and the form
  checkJobSpec(job);
  // the TensorBoard file of the run is written where metrics.jsonl is (app/runs/metrics.ts); its warnings reach the UI
  onEventFileWarning((text) => emit({ type: 'log', level: 'warn', text }));
  switch (job.kind) {
    case 'pretrain': {
      const model = jobModel(job);
      const workers = jobWorkers(job, emit);
      const { train, evalSets } = await pretrainData(job.data, cacheSideFor(model.img_size), emit);
      const dir = nodePath.resolve(job.out);
      const created = !fs.existsSync(dir);
      const run = PretrainRun.create(
        dir,
        pretrainConfig(job, train.count, workers),
        train,
        openOptions(job, emit),
      );
      await trainNewRun(run, created, emit, async () => {
        if (job.init) {
          const f = SafetensorsFile.open(job.init);
          try {
            loadDigptOfficial(run.model as Parameters<typeof loadDigptOfficial>[0], fileSource(f));
          } finally {
            f.close();
          }
          // the imported weights are the run's start: a resume must find them
          await run.save();
          emit({ type: 'log', level: 'info', text: `started from ${job.init} (official D-iGPT names)` });
        }
        await runPretrain(run, evalSets, emit, control);
      });
      return;
    }
    case 'finetune': {
      const created = !fs.existsSync(nodePath.resolve(job.out));
      const run = await startFinetune(job, emit);
      await trainNewRun(run, created, emit, () => runFinetune(run, emit, control));
      return;
    }
    case 'resume': {
      if (!fs.existsSync(nodePath.join(job.run, 'config.json')))
        throw new Error(`${job.run}: no config.json; not a run folder`);
      // the lock first: a second writer is refused before anything is read or loaded
      const opts = openOptions(job, emit);
      const lock = RunLock.acquire(job.run, opts);
      try {
        const config = readRunConfig(job.run);
        if (config.kind === 'finetune') {
          if (!config.data)
            throw new Error(`${job.run}: the run's config.json does not say which dataset it used`);
          const { train, val } = await labelledSplits(config.data, cacheSideFor(config.model.img_size), emit);
          const run = FinetuneRun.resume(job.run, train, val, { ...opts, lock });
          try {
            await runFinetune(run, emit, control);
          } finally {
            run.dispose();
          }
          return;
        }
        // refused before the data is loaded (PretrainRun.resume checks it again)
        checkWorkersBackend(
          config.workers ?? 1,
          currentBackend(),
          `${nodePath.join(job.run, 'config.json')}: workers`,
        );
        const { train, evalSets } = await pretrainData(
          config.data,
          cacheSideFor(config.model.img_size),
          emit,
        );
        const run = PretrainRun.resume(job.run, train, { ...opts, lock });
        try {
          await runPretrain(run, evalSets, emit, control);
        } finally {
          run.dispose();
        }
        return;
      } finally {
        lock.release();
      }
    }
    case 'probe':
    case 'knn':
      await runEval(job, emit);
      return;
    case 'init': {
      const vit = new VitClassifier(
        vitConfigOfDigpt(getPreset(job.preset).model, job.classes.length),
        job.seed,
      );
      try {
        fs.mkdirSync(nodePath.dirname(job.out), { recursive: true });
        await exportClassifier(job.out, vit, job.classes);
      } finally {
        vit.dispose();
      }
      emit({ type: 'result', result: { kind: 'init', path: job.out } });
      emit({ type: 'done', dir: '', step: 0, stopped: false });
      return;
    }
    case 'scaleout': {
      const out = nodePath.resolve(job.out);
      const stage = stageFor(out);
      let runDir: string;
      if (job.pretrain) {
        // a new run for the cluster: its step-0 checkpoint holds the workbench's initial weights
        const p: PretrainJob = { ...job.pretrain, out: nodePath.join(stage, 'run') };
        checkJobSpec(p);
        const model = jobModel(p);
        const { train } = await pretrainData(p.data, cacheSideFor(model.img_size), emit);
        launchShape({ batch: p.batch ?? PRETRAIN_DEFAULTS.batch }, job.nodes, job.gpus_per_node);
        fs.mkdirSync(stage);
        try {
          const run = PretrainRun.create(p.out, pretrainConfig(p, train.count, 1), train, {
            trainsElsewhere: true,
          });
          try {
            await run.save();
          } finally {
            run.dispose();
          }
        } catch (e) {
          fs.rmSync(stage, { recursive: true, force: true });
          throw e;
        }
        runDir = p.out;
      } else if (job.run) {
        runDir = nodePath.resolve(job.run);
        if (!fs.existsSync(nodePath.join(runDir, 'config.json')))
          throw new Error(`${runDir}: no config.json; not a run folder`);
      } else throw new Error('a scaleout job names a run or the settings of a new one');
      const config = readRunConfig(runDir);
      if (config.kind !== 'pretrain')
        throw new Error(`${runDir} is a ${config.kind} run; only pretraining runs are handed to digpt_torch`);
      const r = writeBundle(runDir, await scan(config.data, emit), stage, out, {
        nodes: job.nodes,
        gpusPerNode: job.gpus_per_node,
        ...(job.data_root !== undefined ? { dataRoot: job.data_root } : {}),
        onProgress: (phase, done, total) => emit({ type: 'progress', phase, done, total }),
      });
      emit({
        type: 'result',
        result: {
          kind: 'scaleout',
          path: r.path,
          step: r.step,
          world_size: r.worldSize,
          per_rank_batch: r.perRankBatch,
          files: r.files,
        },
      });
      emit({ type: 'done', dir: r.path, step: r.step, stopped: false });
      return;
    }
    case 'export': {
      const r = await exportRun(job.run, job.format, job.out, job);
      emit({ type: 'result', result: { kind: 'export', path: r.path, tensors: r.tensors, step: r.step } });
      emit({ type: 'done', dir: job.run, step: r.step, stopped: false });
      return;
    }
  }
}
