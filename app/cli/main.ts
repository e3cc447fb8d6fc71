// Entry point of the `digpt` command line: the headless workbench, calling the same job host as the desktop app.
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { initBackend } from '../../engine/backend.js';
import { PRESETS } from '../../engine/config.js';
import { PRETRAIN_OBJECTIVES } from '../../engine/models/factory.js';
import { BUILTIN_SAMPLE_DIR, formatScan, scanDataset } from '../datasets/index.js';
import { BUILTIN_TEACHER } from '../teachers/index.js';
import { startJob } from '../jobs/host.js';
import type { JobSpec } from '../jobs/protocol.js';
import { BUDGET_NAMES, isBudgetName, runAblations } from '../experiments/ablations.js';
import { rewriteReport } from '../experiments/report.js';
import { EXPORT_FORMATS, exportRun, type ExportFormat } from '../runs/export.js';
import { outputMode, Progress } from './progress.js';

const USAGE = `usage: digpt <command> [options]

commands:
  datasets scan DIR [--json] [--validate]     images per class and split, sizes, skipped files
  pretrain --data DIR --preset NAME --teacher SPEC [--objective ${PRETRAIN_OBJECTIVES.join('|')}]
           [--epochs N | --steps N] [--batch N] [--accum N] [--seed S] [--blr X]
           [--out RUN_DIR] [--checkpoint-every STEPS] [--img-size PX] [--workers 1|2|auto] [--json]
           --workers 2 splits each micro-batch with a second thread (both cores on wasm); auto
           (the default): 2 on the wasm backend with 2+ cores, else 1
           SPEC: 'pixels', a CLIP safetensors file (OpenAI, OpenCLIP or HF names), or a
           classifier exported by the workbench (e.g. a finetune run's export)
  import FILE --data DIR --preset NAME --teacher SPEC [pretrain options]
                                              start a pretraining run from official D-iGPT weights
  finetune --data DIR --from RUN|FILE|scratch [--preset NAME] [--epochs N | --steps N]
           [--batch N] [--accum N] [--seed S] [--blr X] [--warmup-epochs N] [--out RUN_DIR]
           [--checkpoint-every STEPS] [--export PATH] [--json]
           [--layer-decay 0.65] [--drop-path 0.1] [--smoothing 0.1] [--mixup 0.8] [--cutmix 1.0]
           [--erase 0.25]                      the recipe's defaults; 0 switches a piece off
  probe --data DIR --from RUN|FILE [--epochs N] [--seed S] [--json]    linear probe, val top-1
  knn --data DIR --from RUN|FILE [--k N] [--json]                      weighted k-NN, val top-1
  resume RUN_DIR [--json]                     continue a run from its newest good checkpoint
  export RUN_DIR --format timm|digpt|tfjs [--out PATH]
  demo [--steps N] [--out RUN_DIR] [--json]   pretrain digpt-micro-32 on the built-in sample with the
                                              built-in teacher, then linear-probe it (a few minutes)
  serve [--host 127.0.0.1] [--port N] [--workspace DIR]
                                              the workbench UI in a browser (token-protected)
  experiment ablations [--budget ${BUDGET_NAMES.join('|')}] [--data DIR] [--out DIR] [--seeds N]
                                              the paper's Tables 5, 7, 9 on Fashion-MNIST: report.md + plots
  experiment report DIR                       write an experiment's report.md and plots again from its results.json
  bench [--preset NAME] [--batch N] [--steps N] [--json] [--peer] [--workers 1|2]
                                              timed training steps (see npm run bench -- --help)
  bench --clip-b16 | --pipeline [DIR]         the teacher's forward at 224 px; the data pipeline from JPEGs
  presets                                     the named model presets

presets: ${PRESETS.map((p) => p.name).join(', ')}`;

/** An error the user made (bad flag, missing argument): printed with the usage, exit code 2. */
class UsageError extends Error {}

function parse<T extends ParseArgsConfig['options']>(args: string[], options: T, positionals = 0) {
  try {
    const r = parseArgs({ args, options, allowPositionals: positionals > 0, strict: true });
    if (r.positionals.length > positionals)
      throw new UsageError(`unexpected argument '${r.positionals[positionals] as string}'`);
    return r;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    // node's messages already name the flag ("Unknown option '--epoch'")
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

function int(v: string | undefined, flag: string, dflt?: number): number {
  if (v === undefined) {
    if (dflt === undefined) throw new UsageError(`${flag} is required`);
    return dflt;
  }
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be a whole number, got '${v}'`);
  return n;
}

function num(v: string | undefined, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number, got '${v}'`);
  return n;
}

function workersFlag(v: string | undefined): number | 'auto' {
  if (v === 'auto') return 'auto';
  const n = Number(v);
  if (n !== 1 && n !== 2) throw new UsageError(`--workers takes 1, 2 or auto, got '${v ?? ''}'`);
  return n;
}

function req(v: string | undefined, flag: string): string {
  if (v === undefined || v === '') throw new UsageError(`${flag} is required`);
  return v;
}

const PRETRAIN_OPTIONS = {
  data: { type: 'string' },
  preset: { type: 'string' },
  'img-size': { type: 'string' },
  teacher: { type: 'string' },
  objective: { type: 'string' },
  epochs: { type: 'string' },
  steps: { type: 'string' },
  batch: { type: 'string' },
  accum: { type: 'string' },
  seed: { type: 'string' },
  blr: { type: 'string' },
  out: { type: 'string' },
  'checkpoint-every': { type: 'string' },
  workers: { type: 'string' },
  json: { type: 'boolean' },
} as const;

function pretrainJob(v: Record<string, string | boolean | undefined>, init?: string): JobSpec {
  const s = (k: string): string | undefined => v[k] as string | undefined;
  const steps = s('steps') !== undefined ? int(s('steps'), '--steps') : undefined;
  const epochs = s('epochs') !== undefined ? num(s('epochs'), '--epochs', 1) : undefined;
  if (steps !== undefined && epochs !== undefined) throw new UsageError('give --steps or --epochs, not both');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  return {
    kind: 'pretrain',
    data: req(s('data'), '--data'),
    preset: req(s('preset'), '--preset'),
    ...(s('img-size') !== undefined ? { imgSize: int(s('img-size'), '--img-size') } : {}),
    teacher: req(s('teacher'), '--teacher'),
    objective: s('objective') ?? 'digpt',
    ...(steps !== undefined ? { steps } : {}),
    ...(epochs !== undefined ? { epochs } : {}),
    batch: Math.max(1, int(s('batch'), '--batch', 32)),
    accum: Math.max(1, int(s('accum'), '--accum', 1)),
    seed: int(s('seed'), '--seed', 0),
    blr: num(s('blr'), '--blr', 1.5e-4),
    out: s('out') ?? nodePath.join('runs', `pretrain-${stamp}`),
    checkpointEvery: Math.max(1, int(s('checkpoint-every'), '--checkpoint-every', 100)),
    workers: s('workers') !== undefined ? workersFlag(s('workers')) : 'auto',
    ...(init ? { init } : {}),
  };
}

/** Runs a job in the engine worker, showing progress; resolves to the exit code. */
async function runJobCli(job: JobSpec, json: boolean): Promise<number> {
  const mode = outputMode(json);
  // machines read one JSON object per line on stdout; people read the bar on stderr
  const progress = new Progress(mode, mode === 'json' ? process.stdout : process.stderr);
  const out = process.stdout;
  const handle = startJob(job);
  let total = 0;
  let runDir = '';
  let label = '';
  let failed: string | undefined;
  let result: Readonly<Record<string, number | string>> | undefined;
  const onSignal = (): void => {
    progress.note('stopping after this step (a checkpoint will be written); press Ctrl-C again to abort');
    process.off('SIGINT', onSignal);
    process.once('SIGINT', () => void handle.kill());
    handle.stop();
  };
  process.once('SIGINT', onSignal);
  handle.on('event', (e) => {
    switch (e.type) {
      case 'backend':
        progress.note(e.text);
        break;
      case 'log':
        progress.note(`${e.level === 'warn' ? 'warning: ' : ''}${e.text}`);
        break;
      case 'progress':
        progress.update(e.phase, e.done, e.total);
        break;
      case 'run':
        total = e.totalSteps;
        runDir = e.dir;
        label = e.clustersPerSide === 0 ? 'finetune' : 'pretrain';
        progress.note(`run ${e.dir}: steps ${e.startStep} -> ${e.totalSteps}`);
        break;
      case 'step': {
        const r = e.record;
        const parts = [`loss ${r.loss.toFixed(4)}`];
        if (r.loss_gen !== undefined) parts.push(`gen ${r.loss_gen.toFixed(4)}`);
        if (r.loss_dis !== undefined) parts.push(`dis ${r.loss_dis.toFixed(4)}`);
        parts.push(`lr ${r.lr.toExponential(2)}`, `${r.img_per_s.toFixed(1)} img/s`);
        progress.update(label || 'train', r.step, total, parts.join('  '), { ...r });
        break;
      }
      case 'eval':
        if (mode === 'json') out.write(`${JSON.stringify({ event: 'eval', ...e.record })}\n`);
        else
          progress.note(
            Object.entries(e.record)
              .filter(([k]) => k !== 'time')
              .map(
                ([k, v]) =>
                  `${k} ${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : String(v)}`,
              )
              .join('  '),
          );
        break;
      case 'result':
        result = e.result;
        break;
      case 'checkpoint':
        if (mode === 'json')
          out.write(`${JSON.stringify({ event: 'checkpoint', step: e.step, folder: e.folder })}\n`);
        break;
      case 'done':
        if (result) {
          if (mode === 'json') out.write(`${JSON.stringify({ event: 'result', ...result })}\n`);
          else
            out.write(
              `${String(result['kind'])} top-1 on the validation split: ${(Number(result['top1']) * 100).toFixed(2)}%\n`,
            );
        } else if (mode === 'json') {
          out.write(`${JSON.stringify({ event: 'done', run: e.dir, step: e.step, stopped: e.stopped })}\n`);
        } else out.write(`${e.stopped ? 'stopped' : 'finished'} at step ${e.step}: ${e.dir}\n`);
        break;
      case 'error':
        failed = e.message;
        break;
      default:
        break;
    }
  });
  const res = await handle.done();
  process.off('SIGINT', onSignal);
  if (failed ?? !res.ok) {
    const msg = failed ?? res.error ?? 'the engine worker failed';
    if (mode === 'json')
      out.write(`${JSON.stringify({ event: 'error', message: msg, run: runDir || undefined })}\n`);
    else process.stderr.write(`digpt: ${msg}\n`);
    return 1;
  }
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return cmd === undefined ? 2 : 0;
    case 'demo': {
      const { values } = parse(rest, {
        steps: { type: 'string' },
        out: { type: 'string' },
        json: { type: 'boolean' },
      });
      const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
      const out = nodePath.resolve(values.out ?? nodePath.join('runs', `demo-${stamp}`));
      const json = values.json === true;
      const t0 = performance.now();
      const code = await runJobCli(
        {
          kind: 'pretrain',
          data: BUILTIN_SAMPLE_DIR,
          preset: 'digpt-micro-32',
          teacher: BUILTIN_TEACHER,
          objective: 'digpt',
          steps: int(values.steps, '--steps', 120),
          batch: 32,
          accum: 1,
          seed: 0,
          blr: 5e-3,
          out,
          checkpointEvery: 60,
          workers: 'auto',
        },
        json,
      );
      if (code !== 0) return code;
      const probeCode = await runJobCli(
        { kind: 'probe', data: BUILTIN_SAMPLE_DIR, source: out, seed: 0 },
        json,
      );
      if (probeCode === 0 && !json) {
        process.stdout.write(
          `demo: run folder ${out} (${((performance.now() - t0) / 1000).toFixed(0)} s in all)\n`,
        );
      }
      return probeCode;
    }
    case 'serve': {
      const { values } = parse(rest, {
        host: { type: 'string' },
        port: { type: 'string' },
        workspace: { type: 'string' },
      });
      const { serve } = await import('../serve.js');
      const workspace = nodePath.resolve(values.workspace ?? nodePath.join(os.homedir(), 'digpt-workbench'));
      const s = await serve({
        host: values.host ?? '127.0.0.1',
        port: int(values.port, '--port', 8765),
        workspace,
      });
      process.stdout.write(`digpt serve: workspace ${workspace}\n  open ${s.url}\n`);
      if (!['127.0.0.1', 'localhost', '::1'].includes(values.host ?? '127.0.0.1')) {
        process.stderr.write(
          'warning: serving beyond loopback; anyone who gets the token can run jobs and read your datasets\n',
        );
      }
      await new Promise<void>((resolve) => {
        const stop = (): void => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await s.close();
      return 0;
    }
    case 'experiment': {
      const [sub, ...r] = rest;
      if (sub === 'report') {
        const dir = r[0];
        if (!dir || r.length > 1) throw new UsageError('usage: digpt experiment report DIR');
        const res = await rewriteReport(dir);
        process.stdout.write(`${res.report}\n`);
        return 0;
      }
      if (sub !== 'ablations')
        throw new UsageError(
          `unknown experiment '${sub ?? ''}'; use 'digpt experiment ablations' or 'digpt experiment report DIR'`,
        );
      const { values } = parse(r, {
        budget: { type: 'string' },
        data: { type: 'string' },
        out: { type: 'string' },
        seeds: { type: 'string' },
      });
      const budget = values.budget ?? 'smoke';
      if (!isBudgetName(budget))
        throw new UsageError(`unknown --budget '${budget}'; use one of ${BUDGET_NAMES.join(', ')}`);
      const res = await runAblations({
        budget,
        ...(values.data !== undefined ? { data: values.data } : {}),
        ...(values.out !== undefined ? { out: values.out } : {}),
        ...(values.seeds !== undefined ? { seeds: Math.max(1, int(values.seeds, '--seeds')) } : {}),
        command: ['digpt', ...argv].join(' '),
      });
      process.stdout.write(`${res.report}\n`);
      return 0;
    }
    case 'bench': {
      // the data pipeline is the app's; the training step and the teacher are the engine's bench
      const i = rest.indexOf('--pipeline');
      if (i >= 0) {
        const dir = rest[i + 1] && !rest[i + 1]?.startsWith('--') ? rest[i + 1] : undefined;
        const json = rest.includes('--json');
        const { benchPipeline } = await import('../bench/pipeline.js');
        const r = await benchPipeline(dir);
        process.stdout.write(
          json
            ? `${JSON.stringify({ kind: 'pipeline', ...r })}\n`
            : `data pipeline (${r.images} JPEGs${dir ? ` in ${dir}` : ', generated'}, ${r.resolution} px): scan ${r.scan_img_per_s} img/s, ` +
                `first load (decode + cache) ${r.first_load_img_per_s} img/s, cached load ${r.cached_load_img_per_s} img/s, ` +
                `augmentation (student + teacher views) ${r.augment_img_per_s} img/s\n`,
        );
        return 0;
      }
      const { benchMain } = await import('../../engine/bench/main.js');
      return benchMain(rest);
    }
    case 'presets':
      for (const p of PRESETS) process.stdout.write(`${p.name}\n  ${p.summary}\n`);
      return 0;
    case 'datasets': {
      const [sub, ...r] = rest;
      if (sub !== 'scan')
        throw new UsageError(`unknown datasets command '${sub ?? ''}'; use 'digpt datasets scan DIR'`);
      const { values, positionals } = parse(
        r,
        { json: { type: 'boolean' }, validate: { type: 'boolean' } },
        1,
      );
      const dir = req(positionals[0], 'DIR');
      const scan = await scanDataset(dir, { validate: values.validate === true });
      process.stdout.write(values.json ? `${JSON.stringify(scan)}\n` : `${formatScan(scan)}\n`);
      return 0;
    }
    case 'pretrain': {
      const { values } = parse(rest, PRETRAIN_OPTIONS);
      return runJobCli(pretrainJob(values), values.json === true);
    }
    case 'import': {
      const { values, positionals } = parse(rest, PRETRAIN_OPTIONS, 1);
      return runJobCli(
        pretrainJob(values, nodePath.resolve(req(positionals[0], 'FILE'))),
        values.json === true,
      );
    }
    case 'finetune': {
      const { values } = parse(rest, {
        data: { type: 'string' },
        from: { type: 'string' },
        preset: { type: 'string' },
        epochs: { type: 'string' },
        steps: { type: 'string' },
        batch: { type: 'string' },
        accum: { type: 'string' },
        seed: { type: 'string' },
        blr: { type: 'string' },
        'warmup-epochs': { type: 'string' },
        out: { type: 'string' },
        'checkpoint-every': { type: 'string' },
        export: { type: 'string' },
        'layer-decay': { type: 'string' },
        'drop-path': { type: 'string' },
        smoothing: { type: 'string' },
        mixup: { type: 'string' },
        cutmix: { type: 'string' },
        erase: { type: 'string' },
        json: { type: 'boolean' },
      });
      const steps = values.steps !== undefined ? int(values.steps, '--steps') : undefined;
      const epochs = values.epochs !== undefined ? num(values.epochs, '--epochs', 1) : undefined;
      if (steps !== undefined && epochs !== undefined)
        throw new UsageError('give --steps or --epochs, not both');
      const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
      const out = values.out ?? nodePath.join('runs', `finetune-${stamp}`);
      /** A recipe number that may be 0 (switches the piece off). */
      const opt = (flag: string, v: string | undefined): number | undefined => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isFinite(n) || n < 0) throw new UsageError(`${flag} must be a number >= 0, got '${v}'`);
        return n;
      };
      const recipe = {
        layerDecay: opt('--layer-decay', values['layer-decay']),
        dropPath: opt('--drop-path', values['drop-path']),
        smoothing: opt('--smoothing', values.smoothing),
        mixup: opt('--mixup', values.mixup),
        cutmix: opt('--cutmix', values.cutmix),
        erase: opt('--erase', values.erase),
      };
      const code = await runJobCli(
        {
          kind: 'finetune',
          data: req(values.data, '--data'),
          from: req(values.from, '--from'),
          ...(values.preset ? { preset: values.preset } : {}),
          ...(steps !== undefined ? { steps } : {}),
          ...(epochs !== undefined ? { epochs } : {}),
          batch: Math.max(1, int(values.batch, '--batch', 32)),
          accum: Math.max(1, int(values.accum, '--accum', 1)),
          seed: int(values.seed, '--seed', 0),
          ...(values.blr !== undefined ? { blr: num(values.blr, '--blr', 1e-3) } : {}),
          ...(values['warmup-epochs'] !== undefined
            ? { warmupEpochs: num(values['warmup-epochs'], '--warmup-epochs', 5) }
            : {}),
          out,
          ...Object.fromEntries(Object.entries(recipe).filter(([, v]) => v !== undefined)),
          ...(values['checkpoint-every'] !== undefined
            ? { checkpointEvery: Math.max(1, int(values['checkpoint-every'], '--checkpoint-every')) }
            : {}),
        },
        values.json === true,
      );
      if (code === 0 && values.export) {
        await initBackend();
        const r = await exportRun(out, 'timm', values.export);
        process.stderr.write(`wrote ${r.path} (the classifier, timm names; usable as --teacher)\n`);
      }
      return code;
    }
    case 'probe':
    case 'knn': {
      const { values } = parse(rest, {
        data: { type: 'string' },
        from: { type: 'string' },
        epochs: { type: 'string' },
        k: { type: 'string' },
        seed: { type: 'string' },
        json: { type: 'boolean' },
      });
      return runJobCli(
        {
          kind: cmd,
          data: req(values.data, '--data'),
          source: req(values.from, '--from'),
          seed: int(values.seed, '--seed', 0),
          ...(values.k !== undefined ? { k: Math.max(1, int(values.k, '--k')) } : {}),
          ...(values.epochs !== undefined ? { epochs: Math.max(1, int(values.epochs, '--epochs')) } : {}),
        },
        values.json === true,
      );
    }
    case 'resume': {
      const { values, positionals } = parse(rest, { json: { type: 'boolean' } }, 1);
      return runJobCli({ kind: 'resume', run: req(positionals[0], 'RUN_DIR') }, values.json === true);
    }
    case 'export': {
      const { values, positionals } = parse(
        rest,
        { format: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' } },
        1,
      );
      const format = req(values.format, '--format');
      if (!(EXPORT_FORMATS as readonly string[]).includes(format)) {
        throw new UsageError(`unknown --format '${format}'; use one of ${EXPORT_FORMATS.join(', ')}`);
      }
      await initBackend();
      const r = await exportRun(req(positionals[0], 'RUN_DIR'), format as ExportFormat, values.out);
      process.stdout.write(
        values.json ? `${JSON.stringify(r)}\n` : `wrote ${r.path} (${r.tensors} tensors, step ${r.step})\n`,
      );
      return 0;
    }
    default:
      throw new UsageError(`unknown command '${cmd}'`);
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) {
    process.stderr.write(`digpt: ${e.message}\n\n${USAGE}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`digpt: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
