// The `digpt` commands as data: each command's flags with their help, defaults and number bounds; usage texts derive from it.
// A run kind's settings come from its table in app/api/run-kinds.ts (the launch form and the job spec use it too).
// Kept light (no tfjs, no experiments): `digpt --help` and a refused flag answer before the engine would load.
import { z } from 'zod';
import { ExportFormat } from '../api/contract.js';
import {
  FINETUNE,
  flagName,
  KNN,
  PRETRAIN,
  PROBE,
  shownDefault,
  type SettingTable,
} from '../api/run-kinds.js';
import { PRESETS } from '../../engine/config.js';
import type { NumberKind } from './flags.js';

/** The budgets of app/experiments/ablations.ts (BUDGET_NAMES; test/app/cli-help.test.ts checks they agree). */
export const BUDGETS_SHOWN = ['smoke', 'small', 'full'] as const;

export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  /** The value's placeholder in usage lines (N, DIR, X). */
  readonly value?: string;
  /** One line: what the flag does. */
  readonly help: string;
  /** Used when the flag is absent, read like a given value, and shown as the default. */
  readonly default?: string;
  /** A default decided elsewhere (the job, the recipe): shown, not applied here. */
  readonly shown?: string;
  /** Shown in the command's synopsis outside brackets. */
  readonly required?: boolean;
  /** A number: how it is read and bounded. */
  readonly number?: NumberKind;
  /** The run setting it gives (config.json's name, app/api/run-kinds.ts): the job spec's field. */
  readonly setting?: string;
}

export interface CommandSpec {
  /** One or two words: 'pretrain', 'datasets scan'. */
  readonly name: string;
  /** The positional arguments as the synopsis shows them ('DIR', 'RUN_DIR'). */
  readonly args?: string;
  /** How many positional arguments it takes at most. */
  readonly positionals: number;
  readonly summary: string;
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** Lines after the flags (values a flag accepts, exclusive flags). */
  readonly notes?: readonly string[];
}

const int = (setting: NumberKind['setting']): NumberKind => ({ int: true, ...(setting ? { setting } : {}) });

const json: FlagSpec = { type: 'boolean', help: 'one JSON object per line on stdout (progress, result)' };
const OUT_RUN = (kind: string): FlagSpec => ({
  type: 'string',
  value: 'RUN_DIR',
  help: 'the run folder to create',
  shown: `WORKSPACE/runs/${kind}-<time>`,
});

/**
 * The flags of a run kind's settings (app/api/run-kinds.ts): `--checkpoint-every` for `checkpoint_every`, the
 * table's help, its default shown (the job applies it, so a flag left out stays out of the job spec) and its bounds.
 */
function settingFlags(table: SettingTable): Record<string, FlagSpec> {
  return Object.fromEntries(
    Object.entries(table).map(([name, s]): [string, FlagSpec] => {
      const shown = shownDefault(s);
      const number: NumberKind | undefined =
        s.type === 'text'
          ? undefined
          : {
              int: s.type === 'int',
              bounds: s.schema as z.ZodType<number>,
              ...(s.auto ? { auto: true, accepts: 'takes 1, 2 or auto' } : {}),
            };
      return [
        flagName(name),
        {
          type: 'string',
          value: s.value,
          help: s.help,
          ...(shown !== undefined ? { shown } : {}),
          ...(number ? { number } : {}),
          setting: name,
        },
      ];
    }),
  );
}

const PRETRAIN_FLAGS: Readonly<Record<string, FlagSpec>> = {
  data: { type: 'string', value: 'DIR', help: 'dataset folder or IDX files', required: true },
  preset: { type: 'string', value: 'NAME', help: 'model preset (digpt presets lists them)', required: true },
  teacher: {
    type: 'string',
    value: 'SPEC',
    help: "targets: 'pixels', 'builtin' (the built-in teacher), a CLIP safetensors file, or a classifier the workbench exported",
    required: true,
  },
  ...settingFlags(PRETRAIN),
  out: OUT_RUN('pretrain'),
  json,
};

const EVAL_SOURCE: Readonly<Record<string, FlagSpec>> = {
  data: {
    type: 'string',
    value: 'DIR',
    help: 'labelled dataset (class folders or IDX labels)',
    required: true,
  },
  from: {
    type: 'string',
    value: 'RUN|FILE',
    help: 'the encoder: a run folder or a weights file',
    required: true,
  },
};

/** Export targets: an existing file (other than the run's own export/) is replaced only when asked. */
const OVERWRITE: FlagSpec = {
  type: 'boolean',
  help: "replace an existing file at the export path (never a run's own files or the app's)",
};

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'datasets scan',
    args: 'DIR',
    positionals: 1,
    summary: 'images per class and split, sizes, skipped files',
    flags: {
      json: { type: 'boolean', help: 'print the scan as one JSON object' },
      validate: { type: 'boolean', help: 'decode every image to find unreadable ones (slow)' },
    },
  },
  {
    name: 'pretrain',
    positionals: 0,
    summary: 'pretrain a D-iGPT encoder (a run folder with checkpoints and metrics.jsonl)',
    flags: PRETRAIN_FLAGS,
    notes: ['give --steps or --epochs, not both'],
  },
  {
    name: 'import',
    args: 'FILE',
    positionals: 1,
    summary: 'start a pretraining run from official D-iGPT weights (FILE, safetensors)',
    flags: { ...PRETRAIN_FLAGS, out: OUT_RUN('import') },
  },
  {
    name: 'finetune',
    positionals: 0,
    summary: 'fine-tune a classifier on a labelled dataset, val top-1 per epoch',
    flags: {
      data: EVAL_SOURCE['data'] as FlagSpec,
      from: {
        type: 'string',
        value: 'RUN|FILE|scratch',
        help: 'the encoder: a run folder, a weights file, or scratch',
        required: true,
      },
      preset: { type: 'string', value: 'NAME', help: 'the architecture for --from scratch' },
      ...settingFlags(FINETUNE),
      out: OUT_RUN('finetune'),
      export: {
        type: 'string',
        value: 'PATH',
        help: 'also write the classifier there (timm names; usable as --teacher)',
      },
      overwrite: OVERWRITE,
      json,
    },
    notes: ['give --steps or --epochs, not both'],
  },
  {
    name: 'probe',
    positionals: 0,
    summary: 'linear probe of a frozen encoder, top-1 on the validation split',
    flags: {
      ...EVAL_SOURCE,
      ...settingFlags(PROBE),
      json,
    },
  },
  {
    name: 'knn',
    positionals: 0,
    summary: 'weighted k-NN of a frozen encoder, top-1 on the validation split',
    flags: {
      ...EVAL_SOURCE,
      ...settingFlags(KNN),
      json,
    },
  },
  {
    name: 'resume',
    args: 'RUN_DIR',
    positionals: 1,
    summary: 'continue a run from its newest good checkpoint (after a crash, Ctrl-C or SIGTERM)',
    flags: { json },
  },
  {
    name: 'scaleout',
    args: '[RUN_DIR]',
    positionals: 1,
    summary:
      'hand a pretraining run to PyTorch DDP (digpt_torch): a bundle with launch files for torchrun, Slurm and this machine',
    flags: {
      out: { type: 'string', value: 'BUNDLE', help: 'the bundle folder to create', required: true },
      // a new run for the cluster: the settings of digpt pretrain (its step-0 checkpoint is bundled)
      ...Object.fromEntries(
        Object.entries(PRETRAIN_FLAGS)
          .filter(([k]) => k !== 'out' && k !== 'json' && k !== 'workers')
          .map(([k, v]) => [k, { ...v, required: false }]),
      ),
      nodes: {
        type: 'string',
        value: 'N',
        help: 'machines of the launch',
        default: '1',
        number: int(undefined),
      },
      'gpus-per-node': {
        type: 'string',
        value: 'G',
        help: 'ranks per machine (GPUs, or processes on a CPU machine)',
        default: '1',
        number: int(undefined),
      },
      'data-root': {
        type: 'string',
        value: 'PATH',
        help: 'where the dataset folder is on the cluster',
        shown: "the run's dataset folder",
      },
      json,
    },
    notes: [
      'RUN_DIR: a pretraining run (its newest good checkpoint is bundled); without it, --data, --preset, --teacher',
      "and digpt pretrain's settings make a new run at step 0 for the cluster to train",
    ],
  },
  {
    name: 'export',
    args: 'RUN_DIR',
    positionals: 1,
    summary:
      "write a run's newest checkpoint for PyTorch/timm, with the paper's names or for TF.js, or its metrics as CSV",
    flags: {
      format: {
        type: 'string',
        value: ExportFormat.options.join('|'),
        help: 'names and file format; csv: metrics.jsonl as one row per step (train and eval columns)',
        required: true,
      },
      out: { type: 'string', value: 'PATH', help: 'where to write it', shown: 'RUN_DIR/export/' },
      overwrite: OVERWRITE,
      json: { type: 'boolean', help: 'print what was written as one JSON object' },
    },
  },
  {
    name: 'demo',
    positionals: 0,
    summary: 'pretrain digpt-micro-32 on the built-in sample with the built-in teacher, then linear-probe it',
    flags: {
      steps: { type: 'string', value: 'N', help: 'pretraining steps', default: '120', number: int('steps') },
      out: OUT_RUN('demo'),
      json,
    },
  },
  {
    name: 'serve',
    positionals: 0,
    summary: 'the workbench UI in a browser (token-protected)',
    flags: {
      host: {
        type: 'string',
        value: 'ADDR',
        help: 'address to bind; beyond loopback, anyone with the token gets in',
        default: '127.0.0.1',
      },
      port: {
        type: 'string',
        value: 'N',
        help: 'port; 0 picks a free one',
        default: '8765',
        number: { int: true, bounds: z.number().int().min(0).max(65535) },
      },
      workspace: {
        type: 'string',
        value: 'DIR',
        help: 'runs/ and the dataset registry',
        shown: '$DIGPT_WORKSPACE or the default workspace',
      },
      logdir: {
        type: 'string',
        value: 'DIR',
        help: 'list the run folders in DIR instead of WORKSPACE/runs (new runs are made there too)',
      },
      external: {
        type: 'string',
        value: 'DIR',
        help:
          'follow runs trained elsewhere (a synced copy of digpt_torch runs): DIR is such a run or holds them; ' +
          'the UI may add runs inside DIR only',
      },
    },
  },
  {
    name: 'experiment ablations',
    positionals: 0,
    summary:
      "the paper's Tables 5, 7, 8, 9 on Fashion-MNIST: report.md and plots; the same command again goes on where it stopped",
    flags: {
      budget: {
        type: 'string',
        value: 'NAME',
        help: `how long: ${BUDGETS_SHOWN.join(', ')}`,
        default: 'smoke',
      },
      data: {
        type: 'string',
        value: 'DIR',
        help: 'Fashion-MNIST IDX files',
        shown: '/usr/share/datasets/fashion-mnist or ../shared/datasets/fashion-mnist',
      },
      out: {
        type: 'string',
        value: 'DIR',
        help: 'the experiment folder; given again, finished jobs are kept (verified) and unfinished runs resume',
        shown: 'WORKSPACE/experiments/ablations-<budget>-<time>',
      },
      seeds: {
        type: 'string',
        value: 'N',
        help: 'seeds per row',
        shown: "the budget's",
        number: { int: true, bounds: z.number().int().positive() },
      },
    },
  },
  {
    name: 'experiment report',
    args: 'DIR',
    positionals: 1,
    summary: "write an experiment's report.md and plots again from its results.json",
    flags: {},
  },
  {
    name: 'presets',
    positionals: 0,
    summary: 'the named model presets',
    flags: {},
  },
];

/** bench parses its own flags (engine/bench); the CLI adds the data-pipeline bench. */
export const BENCH_SUMMARY = [
  '  bench [--preset NAME] [--batch N] [--steps N] [--json] [--peer] [--workers 1|2|auto]',
  '      timed training steps (digpt bench --help)',
  '  bench --clip-b16 | --pipeline [DIR]',
  '      the teacher forward at 224 px; the data pipeline from JPEGs',
];

/** The command named by the first one or two words of `argv`, and the words after it. */
export function findCommand(argv: readonly string[]): { spec: CommandSpec; rest: string[] } | undefined {
  for (const words of [2, 1]) {
    const name = argv.slice(0, words).join(' ');
    const spec = COMMANDS.find((c) => c.name === name);
    if (spec) return { spec, rest: argv.slice(words) };
  }
  return undefined;
}

/** First words of commands with sub-commands ('datasets', 'experiment'). */
export function groupOf(word: string): CommandSpec[] {
  return COMMANDS.filter((c) => c.name.startsWith(`${word} `));
}

function flagWord(name: string, f: FlagSpec): string {
  return f.type === 'boolean' ? `--${name}` : `--${name} ${f.value ?? 'X'}`;
}

/** Words wrapped at `width` columns, continued lines indented by `indent` spaces. */
function wrap(words: readonly string[], first: string, indent: number, width = 100): string[] {
  const lines: string[] = [];
  let line = first;
  for (const w of words) {
    if (line.length + 1 + w.length > width && line.trim() !== '') {
      lines.push(line);
      line = ' '.repeat(indent) + w;
    } else line = line.trim() === '' ? line + w : `${line} ${w}`;
  }
  lines.push(line);
  return lines;
}

/** `pretrain --data DIR --preset NAME --teacher SPEC [--objective NAME] ...`, wrapped. */
export function synopsis(c: CommandSpec, lead = '  '): string[] {
  const words = [
    ...(c.args ? [c.args] : []),
    ...Object.entries(c.flags)
      .filter(([, f]) => f.required)
      .map(([n, f]) => flagWord(n, f)),
    ...Object.entries(c.flags)
      .filter(([, f]) => !f.required)
      .map(([n, f]) => `[${flagWord(n, f)}]`),
  ];
  return wrap(words, `${lead}${c.name}`, lead.length + c.name.length + 1);
}

/** One command's usage: synopsis, summary, every flag with its help and default. */
export function commandUsage(c: CommandSpec): string {
  const rows = Object.entries(c.flags).map(([n, f]) => {
    const dflt = f.default ?? f.shown;
    return { left: flagWord(n, f), right: `${f.help}${dflt !== undefined ? ` (default: ${dflt})` : ''}` };
  });
  rows.push({ left: '-h, --help', right: 'this text' });
  const w = Math.max(...rows.map((r) => r.left.length));
  return [
    ...synopsis(c, 'usage: digpt '),
    '',
    c.summary,
    '',
    'options:',
    ...rows.map((r) => `  ${r.left.padEnd(w)}  ${r.right}`),
    ...(c.notes?.length ? ['', ...c.notes] : []),
  ].join('\n');
}

/** The top-level usage: every command's synopsis and summary. */
export function topUsage(): string {
  const lines = ['usage: digpt <command> [options]', '', 'commands:'];
  for (const c of COMMANDS) lines.push(...synopsis(c), `      ${c.summary}`);
  lines.push(...BENCH_SUMMARY);
  lines.push(
    '  help [COMMAND]',
    "      this text, or a command's flags (also: digpt COMMAND --help)",
    '',
    'digpt --version prints the version. Runs go to WORKSPACE/runs: $DIGPT_WORKSPACE, else the default workspace',
    '(digpt serve prints it). Interrupted by SIGINT or SIGTERM, a job checkpoints at the next step and exits 130 or',
    '143; a second signal ends it at once.',
    '',
    `presets: ${PRESETS.map((p) => p.name).join(', ')}`,
  );
  return lines.join('\n');
}
