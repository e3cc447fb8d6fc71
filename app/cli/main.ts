// Entry point of the `digpt` command line: the headless workbench, calling the same job host as the desktop app.
// tfjs loads in the jobs, not here; the experiments load when asked for (help and flag errors answer at once).
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as nodePath from 'node:path';
import { parseArgs } from 'node:util';
import { ExportFormat } from '../api/contract.js';
import { FINETUNE, KNN, PRETRAIN, PROBE, type Settings } from '../api/run-kinds.js';
import { PRESETS } from '../../engine/config.js';
import { BUILTIN_SAMPLE_DIR } from '../datasets/index.js';
import { BUILTIN_TEACHER } from '../teachers/index.js';
import { startJob } from '../jobs/host.js';
import type { ExportJob, FinetuneJob, JobSpec, PretrainJob, ScaleoutJob } from '../jobs/protocol.js';
import { exportMetricsCsv } from '../runs/csv.js';
import { defaultWorkspace, newRunDir, runsDir, runStamp } from '../workspace.js';
import { commandUsage, COMMANDS, findCommand, groupOf, topUsage, type CommandSpec } from './commands.js';
import { parseNumber, joinNegativeValues, UsageError } from './flags.js';
import { outputMode, Progress } from './progress.js';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');

function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(nodePath.join(ROOT, 'package.json'), 'utf8')) as { version: string })
    .version;
}

/** 128 + the signal's number, as a shell reports a process ended by it: 130 for SIGINT, 143 for SIGTERM. */
function signalExitCode(sig: NodeJS.Signals): number {
  return 128 + osConstants.signals[sig];
}

/** The flags of one command, read against its table entry (commands.ts). */
class Flags {
  constructor(
    readonly spec: CommandSpec,
    private readonly values: Readonly<Record<string, string | boolean | undefined>>,
    readonly positionals: readonly string[],
  ) {}

  has(name: string): boolean {
    return this.values[name] !== undefined;
  }

  bool(name: string): boolean {
    return this.values[name] === true;
  }

  /** The given text, else the table's default. */
  str(name: string): string | undefined {
    const v = this.values[name];
    return typeof v === 'string' ? v : this.spec.flags[name]?.default;
  }

  req(name: string): string {
    const v = this.str(name);
    if (v === undefined || v === '') throw new UsageError(`--${name} is required`, this.spec.name);
    return v;
  }

  /** A numeric flag (given or its default), read and bounded as the table says. */
  num(name: string): number | undefined {
    const v = this.numOrAuto(name);
    if (v === 'auto') throw new UsageError(`--${name} does not take 'auto'`, this.spec.name);
    return v;
  }

  numOrAuto(name: string): number | 'auto' | undefined {
    const f = this.spec.flags[name];
    if (!f?.number) throw new Error(`--${name} is not a numeric flag of ${this.spec.name}`);
    const raw = this.str(name);
    if (raw === undefined) return undefined;
    try {
      return parseNumber(raw, `--${name}`, f.number);
    } catch (e) {
      throw e instanceof UsageError ? new UsageError(e.message, this.spec.name) : e;
    }
  }

  /** The positional argument at `i`, required, named in the error as `what`. */
  arg(i: number, what: string): string {
    const v = this.positionals[i];
    if (v === undefined || v === '') throw new UsageError(`${what} is required`, this.spec.name);
    return v;
  }
}

/** Parses `args` strictly against `spec` (node:util parseArgs: unknown flags and stray arguments are errors). */
function parse(spec: CommandSpec, args: string[]): Flags {
  const options = Object.fromEntries(Object.entries(spec.flags).map(([n, f]) => [n, { type: f.type }]));
  const valueFlags = new Set(
    Object.entries(spec.flags)
      .filter(([, f]) => f.type === 'string')
      .map(([n]) => n),
  );
  try {
    const r = parseArgs({
      args: joinNegativeValues(args, valueFlags),
      options,
      allowPositionals: spec.positionals > 0,
      strict: true,
    });
    if (r.positionals.length > spec.positionals)
      throw new UsageError(`unexpected argument '${r.positionals[spec.positionals] as string}'`, spec.name);
    return new Flags(spec, r.values as Record<string, string | boolean | undefined>, r.positionals);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    // node's messages already name the flag ("Unknown option '--epoch'")
    throw new UsageError(e instanceof Error ? e.message : String(e), spec.name);
  }
}

/** `--help` or `-h` among a command's arguments (before a `--`). */
function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** A run folder: --out, else a new folder in the workspace's runs (where `digpt serve` and the app list runs). */
function outDir(f: Flags, kind: string): string {
  const out = f.str('out');
  return nodePath.resolve(out ?? newRunDir(runsDir(defaultWorkspace()), kind));
}

/**
 * The run settings given on the command line (flags that carry a `setting`), under config.json's names; a flag
 * left out stays out, and the job applies the table's default (app/api/run-kinds.ts).
 */
function givenSettings(f: Flags): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  for (const [flag, spec] of Object.entries(f.spec.flags)) {
    if (spec.setting === undefined) continue;
    const v = spec.number ? f.numOrAuto(flag) : f.str(flag);
    if (v !== undefined) out[spec.setting] = v;
  }
  if (out['steps'] !== undefined && out['epochs'] !== undefined)
    throw new UsageError('give --steps or --epochs, not both', f.spec.name);
  return out;
}

function pretrainJob(f: Flags, init?: string): PretrainJob {
  return {
    kind: 'pretrain',
    data: f.req('data'),
    preset: f.req('preset'),
    teacher: f.req('teacher'),
    // checked with the job's schema when the job starts (checkJobSpec): --objective's words among them
    ...(givenSettings(f) as Settings<typeof PRETRAIN>),
    ...(init ? { init } : {}),
    out: outDir(f, init ? 'import' : 'pretrain'),
  };
}

function finetuneJob(f: Flags): FinetuneJob {
  return {
    kind: 'finetune',
    data: f.req('data'),
    from: f.req('from'),
    ...(f.str('preset') ? { preset: f.str('preset') as string } : {}),
    ...(givenSettings(f) as Settings<typeof FINETUNE>),
    out: outDir(f, 'finetune'),
  };
}

/** A probe or k-NN job: the encoder, the dataset and the kind's settings. */
function evalJob(f: Flags, kind: 'probe' | 'knn'): JobSpec {
  const where = { data: f.req('data'), source: f.req('from') };
  return kind === 'probe'
    ? { kind, ...where, ...(givenSettings(f) as Settings<typeof PROBE>) }
    : { kind, ...where, ...(givenSettings(f) as Settings<typeof KNN>) };
}

/**
 * SIGINT and SIGTERM while a job runs: the first asks it to stop at the next step boundary with a checkpoint, the
 * second ends it at once. Returns the first signal seen (undefined when none) and a function that removes the handlers.
 */
function stopOnSignals(
  onFirst: (sig: NodeJS.Signals) => void,
  onSecond: (sig: NodeJS.Signals) => void,
): { signal: () => NodeJS.Signals | undefined; off: () => void } {
  let first: NodeJS.Signals | undefined;
  const handler = (sig: NodeJS.Signals): void => {
    if (first === undefined) {
      first = sig;
      onFirst(sig);
    } else onSecond(sig);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: () => first,
    off: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/** Runs a job in the engine, showing progress; resolves to the exit code (0, 1 failed, 130/143 interrupted). */
async function runJobCli(job: JobSpec, json: boolean): Promise<number> {
  const mode = outputMode(json);
  // machines read one JSON object per line on stdout; people read the bar on stderr
  const progress = new Progress(mode, mode === 'json' ? process.stdout : process.stderr);
  const out = process.stdout;
  const handle = startJob(job);
  let total = 0;
  let runDir = '';
  let label = '';
  let lastStep: number | undefined;
  let checkpoint: string | undefined;
  let failed: string | undefined;
  let result: Readonly<Record<string, number | string>> | undefined;
  const signals = stopOnSignals(
    (sig) => {
      progress.note(
        `${sig}: stopping after this step (a checkpoint will be written); send it again to end at once`,
      );
      handle.stop();
    },
    (sig) => {
      progress.note(`${sig} again: ending the job now, without a checkpoint`);
      void handle.kill();
    },
  );
  handle.on('event', (e) => {
    switch (e.type) {
      case 'backend':
        // --json: the facts beside the line, so a script reads them instead of parsing it
        if (mode === 'json')
          out.write(`${JSON.stringify({ event: 'log', text: e.backend.text, backend: e.backend })}\n`);
        else progress.note(e.backend.text);
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
        checkpoint = e.folder;
        if (mode === 'json')
          out.write(`${JSON.stringify({ event: 'checkpoint', step: e.step, folder: e.folder })}\n`);
        break;
      case 'done':
        lastStep = e.step;
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
  signals.off();
  const sig = signals.signal();
  // after kill() the failure is ours, not the job's
  const failure = handle.killed
    ? undefined
    : (failed ?? (res.ok ? undefined : (res.error ?? 'the engine worker failed')));
  if (failure !== undefined) {
    if (mode === 'json')
      out.write(`${JSON.stringify({ event: 'error', message: failure, run: runDir || undefined })}\n`);
    else process.stderr.write(`digpt: ${failure}\n`);
  }
  if (sig !== undefined) {
    const code = signalExitCode(sig);
    const saved = handle.killed ? null : (checkpoint ?? null);
    if (mode === 'json')
      out.write(
        `${JSON.stringify({ event: 'interrupted', signal: sig, run: runDir || undefined, step: lastStep ?? null, checkpoint: saved, exit: code })}\n`,
      );
    else
      process.stderr.write(
        `digpt: interrupted by ${sig}${handle.killed ? ', ended without a checkpoint' : lastStep !== undefined ? ` at step ${lastStep}` : ''}` +
          `${runDir ? `; \`digpt resume ${runDir}\` continues from its newest checkpoint` : ''}\n`,
      );
    return code;
  }
  return failure !== undefined ? 1 : 0;
}

/** Writes an export in the engine (the host loads no tfjs); resolves to what was written. */
/**
 * Runs a job that ends in one `result` (export, scaleout) and returns that result; warnings go to stderr, and with
 * `progress` each phase's completion too. Throws the job's error.
 */
async function resultOf(
  job: ExportJob | ScaleoutJob,
  progress = false,
): Promise<Readonly<Record<string, number | string>>> {
  const handle = startJob(job);
  let result: Record<string, number | string> | undefined;
  let error: string | undefined;
  handle.on('event', (e) => {
    if (e.type === 'result') result = { ...e.result };
    else if (e.type === 'error') error = e.message;
    else if (e.type === 'log' && e.level === 'warn') process.stderr.write(`warning: ${e.text}\n`);
    else if (e.type === 'progress' && progress && e.done === e.total)
      process.stderr.write(`${e.phase}: ${e.done}/${e.total}\n`);
  });
  const r = await handle.done();
  if (error ?? !r.ok) throw new Error(error ?? r.error ?? `${job.kind} failed`);
  if (!result) throw new Error(`${job.kind} finished without a result`);
  return result;
}

async function runExport(job: ExportJob): Promise<{ path: string; tensors: number; step: number }> {
  const result = await resultOf(job);
  return { path: String(result['path']), tensors: Number(result['tensors']), step: Number(result['step']) };
}

/** `digpt scaleout`: the bundle is written by a job (it reads checkpoints and the teacher with the engine). */
async function scaleoutCommand(f: Flags): Promise<number> {
  const run = f.positionals.length > 0 ? f.arg(0, 'RUN_DIR') : undefined;
  const fresh = ['data', 'preset', 'teacher'].filter((k) => f.has(k));
  if (run && fresh.length > 0)
    throw new UsageError(`give RUN_DIR or --data/--preset/--teacher for a new run, not both`, 'scaleout');
  let pretrain: Omit<PretrainJob, 'out'> | undefined;
  if (!run) {
    const { out: _out, ...settings } = pretrainJob(f);
    pretrain = settings;
  }
  const json = f.bool('json');
  const job: ScaleoutJob = {
    kind: 'scaleout',
    ...(run ? { run } : {}),
    ...(pretrain ? { pretrain } : {}),
    out: f.req('out'),
    nodes: f.num('nodes') as number,
    gpus_per_node: f.num('gpus-per-node') as number,
    ...(f.has('data-root') ? { data_root: f.req('data-root') } : {}),
  };
  const result = await resultOf(job, !json);
  process.stdout.write(
    json
      ? `${JSON.stringify(result)}\n`
      : `wrote ${result['path']}: step ${result['step']}, ${result['world_size']} rank(s) x batch ` +
          `${result['per_rank_batch']}, ${result['files']} dataset file(s) referenced\n` +
          `run it here: ${result['path']}/launch/local.sh --nproc 2; on a cluster: launch/torchrun.sh or sbatch launch/slurm.sbatch\n`,
  );
  return 0;
}

async function benchUsage(): Promise<string> {
  const { USAGE } = await import('../../engine/bench/main.js');
  return [
    USAGE.replace('npm run bench --', 'digpt bench'),
    '',
    'digpt bench takes the flags of npm run bench; also:',
    '  digpt bench --pipeline [DIR] [--json]   the data pipeline (scan, decode + cache, augmentation) on JPEGs',
  ].join('\n');
}

/** `digpt help WORDS`: a command's usage, a group's commands, or everything. */
async function help(words: string[]): Promise<string> {
  if (words.length === 0) return topUsage();
  if (words[0] === 'bench') return benchUsage();
  const found = findCommand(words);
  if (found && found.rest.length === 0) return commandUsage(found.spec);
  const group = groupOf(words[0] as string);
  if (group.length && words.length === 1) return group.map((c) => commandUsage(c)).join('\n\n');
  throw new UsageError(`no command '${words.join(' ')}'; digpt help lists them`);
}

async function serveCommand(f: Flags): Promise<number> {
  const { serve } = await import('../serve.js');
  const workspace = f.has('workspace') ? nodePath.resolve(f.req('workspace')) : defaultWorkspace();
  const logdir = f.has('logdir') ? nodePath.resolve(f.req('logdir')) : undefined;
  if (logdir !== undefined && !fs.existsSync(logdir))
    throw new UsageError(`--logdir: ${logdir} does not exist`, f.spec.name);
  const external = f.has('external') ? nodePath.resolve(f.req('external')) : undefined;
  if (external !== undefined && !fs.existsSync(external))
    throw new UsageError(`--external: ${external} does not exist`, f.spec.name);
  const host = f.req('host');
  const s = await serve({
    host,
    port: f.num('port') as number,
    workspace,
    ...(logdir !== undefined ? { runsDir: logdir } : {}),
    ...(external !== undefined ? { external } : {}),
  });
  process.stdout.write(
    `digpt serve: workspace ${workspace}, runs in ${logdir ?? runsDir(workspace)}\n  open ${s.url}\n`,
  );
  if (!['127.0.0.1', 'localhost', '::1'].includes(host)) {
    process.stderr.write(
      'warning: serving beyond loopback; anyone who gets the token can run jobs and read your datasets\n',
    );
  }
  // the first signal stops running jobs with a checkpoint (Workbench.close), a second ends the server at once
  const sig = await new Promise<NodeJS.Signals>((resolve) => {
    stopOnSignals(resolve, (again) => {
      process.stderr.write(`digpt serve: ${again} again: exiting without waiting for the jobs\n`);
      process.exit(signalExitCode(again));
    });
  });
  process.stderr.write(`digpt serve: ${sig}: stopping running jobs (each writes a checkpoint)\n`);
  await s.close();
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd] = argv;
  if (cmd === undefined) {
    process.stderr.write(`${topUsage()}\n`);
    return 2;
  }
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    process.stdout.write(`digpt ${packageVersion()}\n`);
    return 0;
  }
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(`${await help(argv.slice(1))}\n`);
    return 0;
  }
  if (cmd === 'bench') {
    const rest = argv.slice(1);
    if (wantsHelp(rest)) {
      process.stdout.write(`${await benchUsage()}\n`);
      return 0;
    }
    return bench(rest);
  }
  const found = findCommand(argv);
  if (!found) {
    const group = groupOf(cmd);
    if (group.length) {
      if (wantsHelp(argv.slice(1))) {
        process.stdout.write(`${group.map((c) => commandUsage(c)).join('\n\n')}\n`);
        return 0;
      }
      throw new UsageError(
        `unknown ${cmd} command '${argv[1] ?? ''}'; use ${group.map((c) => `'digpt ${c.name}'`).join(' or ')}`,
      );
    }
    throw new UsageError(`unknown command '${cmd}'`);
  }
  const { spec, rest } = found;
  if (wantsHelp(rest)) {
    process.stdout.write(`${commandUsage(spec)}\n`);
    return 0;
  }
  const f = parse(spec, rest);
  switch (spec.name) {
    case 'demo': {
      const out = outDir(f, 'demo');
      const steps = f.num('steps') as number;
      const json = f.bool('json');
      const t0 = performance.now();
      const code = await runJobCli(
        {
          kind: 'pretrain',
          data: BUILTIN_SAMPLE_DIR,
          preset: 'digpt-micro-32',
          teacher: BUILTIN_TEACHER,
          objective: 'digpt',
          steps,
          batch: 32,
          accum: 1,
          seed: 0,
          blr: 5e-3,
          out,
          checkpoint_every: 60,
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
    case 'serve':
      return serveCommand(f);
    case 'experiment report': {
      const { rewriteReport } = await import('../experiments/report.js');
      const res = await rewriteReport(f.arg(0, 'DIR'));
      process.stdout.write(`${res.report}\n`);
      return 0;
    }
    case 'experiment ablations': {
      const { BUDGET_NAMES, isBudgetName } = await import('../experiments/design.js');
      const { runAblations } = await import('../experiments/ablations.js');
      const budget = f.req('budget');
      if (!isBudgetName(budget))
        throw new UsageError(
          `unknown --budget '${budget}'; use one of ${BUDGET_NAMES.join(', ')}`,
          spec.name,
        );
      const seeds = f.num('seeds');
      const out = f.has('out')
        ? f.req('out')
        : nodePath.join(defaultWorkspace(), 'experiments', `ablations-${budget}-${runStamp()}`);
      try {
        const res = await runAblations({
          budget,
          ...(f.has('data') ? { data: f.req('data') } : {}),
          out,
          ...(seeds !== undefined ? { seeds } : {}),
          command: ['digpt', ...argv].join(' '),
          handleSignals: true,
        });
        process.stdout.write(`${res.report}\n`);
        return 0;
      } catch (e) {
        const { AblationsStopped } = await import('../experiments/ablations.js');
        if (!(e instanceof AblationsStopped)) throw e;
        process.stderr.write(`ablations: ${e.message}\n`);
        return e.signal === 'SIGINT' ? 130 : 143;
      }
    }
    case 'presets':
      for (const p of PRESETS) process.stdout.write(`${p.name}\n  ${p.summary}\n`);
      return 0;
    case 'datasets scan': {
      const { formatScan, scanDataset } = await import('../datasets/index.js');
      const scan = await scanDataset(f.arg(0, 'DIR'), { validate: f.bool('validate') });
      process.stdout.write(f.bool('json') ? `${JSON.stringify(scan)}\n` : `${formatScan(scan)}\n`);
      return 0;
    }
    case 'pretrain':
      return runJobCli(pretrainJob(f), f.bool('json'));
    case 'import':
      return runJobCli(pretrainJob(f, nodePath.resolve(f.arg(0, 'FILE'))), f.bool('json'));
    case 'finetune': {
      const job = finetuneJob(f);
      const code = await runJobCli(job, f.bool('json'));
      const target = f.str('export');
      if (code === 0 && target) {
        const r = await runExport({
          kind: 'export',
          run: job.out,
          format: 'timm',
          out: target,
          overwrite: f.bool('overwrite'),
        });
        process.stderr.write(`wrote ${r.path} (the classifier, timm names; usable as --teacher)\n`);
      }
      return code;
    }
    case 'probe':
    case 'knn':
      return runJobCli(evalJob(f, spec.name), f.bool('json'));
    case 'resume':
      return runJobCli({ kind: 'resume', run: f.arg(0, 'RUN_DIR') }, f.bool('json'));
    case 'scaleout':
      return scaleoutCommand(f);
    case 'export': {
      const format = f.req('format');
      if (!(ExportFormat.options as readonly string[]).includes(format)) {
        throw new UsageError(
          `unknown --format '${format}'; use one of ${ExportFormat.options.join(', ')}`,
          spec.name,
        );
      }
      const run = f.arg(0, 'RUN_DIR');
      if (format === 'csv') {
        // metrics.jsonl as a table: no engine, so no job
        const c = exportMetricsCsv(run, f.has('out') ? f.req('out') : undefined, {
          overwrite: f.bool('overwrite'),
        });
        process.stdout.write(
          f.bool('json')
            ? `${JSON.stringify(c)}\n`
            : `wrote ${c.path} (${c.rows} rows, steps up to ${c.step})\n`,
        );
        return 0;
      }
      const r = await runExport({
        kind: 'export',
        run,
        format: format as ExportJob['format'],
        ...(f.has('out') ? { out: f.req('out') } : {}),
        overwrite: f.bool('overwrite'),
      });
      process.stdout.write(
        f.bool('json')
          ? `${JSON.stringify(r)}\n`
          : `wrote ${r.path} (${r.tensors} tensors, step ${r.step})\n`,
      );
      return 0;
    }
    default:
      throw new Error(`command ${spec.name} is in the table but has no handler`);
  }
}

/** `digpt bench`: the data pipeline is the app's; the training step and the teacher are the engine's bench. */
async function bench(rest: string[]): Promise<number> {
  const i = rest.indexOf('--pipeline');
  if (i >= 0) {
    const dir = rest[i + 1] && !rest[i + 1]?.startsWith('--') ? rest[i + 1] : undefined;
    const json = rest.includes('--json');
    const { benchPipeline } = await import('../worker/bench-pipeline.js');
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

/** The usage printed after a usage error: the command's when known, else the top-level one. */
function usageFor(e: UsageError): string {
  const spec = e.command ? COMMANDS.find((c) => c.name === e.command) : undefined;
  return spec ? commandUsage(spec) : topUsage();
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) {
    process.stderr.write(`digpt: ${e.message}\n\n${usageFor(e)}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`digpt: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
