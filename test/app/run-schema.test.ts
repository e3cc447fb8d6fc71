// The run kinds' settings tables (app/api/run-kinds.ts) and what derives from them: launch request, job spec, CLI flags, config.json.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { LaunchRequest } from '../../app/api/contract.js';
import {
  FINETUNE,
  FINETUNE_DEFAULTS,
  KNN,
  PRETRAIN,
  PRETRAIN_DEFAULTS,
  PRETRAIN_RECIPE,
  PROBE,
  RUN_KINDS,
  defaultsOf,
  flagName,
  shownDefault,
} from '../../app/api/run-kinds.js';
import { COMMANDS } from '../../app/cli/commands.js';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import { startJob } from '../../app/jobs/host.js';
import { RunJobSchemas, type JobSpec } from '../../app/jobs/protocol.js';
import {
  FinetuneConfigSchema,
  PretrainConfigSchema,
  checkJobSpec,
  readRunConfig,
} from '../../app/runs/config.js';

const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-run-schema-'));
const env = { ...process.env, DIGPT_CACHE: nodePath.join(tmp, 'cache') };

/** Runs a job in a worker thread to its end; resolves to its error, if any. */
async function run(job: JobSpec): Promise<string | undefined> {
  const h = startJob(job, env);
  let error: string | undefined;
  h.on('event', (e) => {
    if (e.type === 'error') error = e.message;
  });
  const r = await h.done();
  return error ?? (r.ok ? undefined : (r.error ?? 'failed'));
}

const command = (name: string) => COMMANDS.find((c) => c.name === name);

describe('run kinds: one table per kind', () => {
  it('every default lies in its own bounds, and every setting has one line of help', () => {
    for (const [kind, table] of Object.entries(RUN_KINDS)) {
      for (const [name, s] of Object.entries(table)) {
        assert.ok(s.help.length > 0 && !s.help.includes('\n'), `${kind}.${name}: help`);
        if (s.default === undefined) continue;
        const ok = s.default === 'auto' ? s.auto === true : s.schema.safeParse(s.default).success;
        assert.ok(ok, `${kind}.${name}: default ${String(s.default)} is out of its bounds`);
      }
    }
  });

  it("gives each command of a kind a flag per setting: config.json's name with dashes, the table's help and default", () => {
    const cases = [
      ['pretrain', PRETRAIN],
      ['import', PRETRAIN],
      ['finetune', FINETUNE],
      ['probe', PROBE],
      ['knn', KNN],
    ] as const;
    for (const [cmd, table] of cases) {
      const flags = command(cmd)?.flags ?? {};
      for (const [name, s] of Object.entries(table)) {
        const f = flags[flagName(name)];
        assert.ok(f, `${cmd}: --${flagName(name)}`);
        assert.equal(f.help, s.help);
        assert.equal(f.shown, shownDefault(s), `${cmd} --${flagName(name)}: shown default`);
        // the job applies the default, so an absent flag must stay out of the job spec
        assert.equal(f.default, undefined);
        assert.equal(f.setting, name);
        assert.equal(f.number === undefined, s.type === 'text');
        if (f.number) assert.equal(f.number.int, s.type === 'int');
      }
    }
    assert.equal(flagName('checkpoint_every'), 'checkpoint-every');
    assert.equal(command('finetune')?.flags['drop-path']?.shown, '0.1');
    assert.equal(command('pretrain')?.flags['blr']?.shown, '5e-3');
    assert.equal(command('finetune')?.flags['checkpoint-every']?.shown, 'one epoch');
  });

  it('derives the launch request: settings in config.json names, each optional, with the same bounds', () => {
    const base = { kind: 'pretrain', dataset: 'd', preset: 'p', teacher: 'pixels' } as const;
    assert.ok(LaunchRequest.safeParse(base).success, 'every setting may be left to its default');
    const r = LaunchRequest.safeParse({ ...base, checkpoint_every: 5, workers: 'auto', img_size: 32 });
    assert.ok(r.success && r.data.kind === 'pretrain' && r.data.checkpoint_every === 5);
    const bad = LaunchRequest.safeParse({ ...base, checkpoint_every: 0 });
    assert.ok(!bad.success);
    assert.deepEqual(bad.error.issues[0]?.path, ['checkpoint_every']);
    const ft = LaunchRequest.safeParse({ kind: 'finetune', dataset: 'd', from: 'r', drop_path: 1.5 });
    assert.ok(!ft.success);
    assert.deepEqual(ft.error.issues[0]?.path, ['drop_path']);
    const knn = LaunchRequest.safeParse({ kind: 'knn', dataset: 'd', from: 'r', k: 5 });
    assert.ok(knn.success && knn.data.kind === 'knn' && knn.data.k === 5);
  });

  it('checks a job spec with its schema: bounds, words and misspelt (camelCase) settings, naming the field', () => {
    const job = { kind: 'finetune', data: 'd', from: 'scratch', out: 'o' } as const;
    checkJobSpec(job);
    assert.throws(
      () => checkJobSpec({ ...job, drop_path: -1 }),
      /^Error: finetune job: drop_path: Too small: expected number to be >=0 \(got -1\)$/,
    );
    assert.throws(
      () => checkJobSpec({ ...job, dropPath: 0.2 } as unknown as Parameters<typeof checkJobSpec>[0]),
      /finetune job: Unrecognized key: "dropPath"/,
    );
    const pre = { kind: 'pretrain', data: 'd', preset: 'p', teacher: 'pixels', out: 'o' } as const;
    assert.throws(
      () => checkJobSpec({ ...pre, objective: 'gpt' as 'digpt' }),
      /pretrain job: objective: Invalid option/,
    );
    assert.throws(() => checkJobSpec({ ...pre, workers: 3 as 2 }), /pretrain job: workers: Invalid input/);
    checkJobSpec({ ...pre, workers: 'auto' });
    assert.throws(
      () => checkJobSpec({ kind: 'probe', data: 'd', source: 's', epochs: 1.5 }),
      /probe job: epochs: Invalid input: expected int/,
    );
    assert.deepEqual(Object.keys(RunJobSchemas).sort(), Object.keys(RUN_KINDS).sort());
  });

  it("checks config.json with the tables' bounds, and records every fine-tuning setting", () => {
    const finetuneKeys = Object.keys(FinetuneConfigSchema.shape);
    for (const name of Object.keys(FINETUNE))
      assert.ok(finetuneKeys.includes(name), `finetune config: ${name}`);
    const pretrainKeys = Object.keys(PretrainConfigSchema.shape);
    for (const name of ['objective', 'steps', 'batch', 'accum', 'seed', 'blr', 'checkpoint_every', 'workers'])
      assert.ok(pretrainKeys.includes(name), `pretrain config: ${name}`);
    // 'auto' is resolved in the job: config.json holds the number
    assert.ok(!PretrainConfigSchema.shape.workers.safeParse('auto').success);
    assert.equal(FINETUNE_DEFAULTS.drop_path, 0.1);
    assert.deepEqual(defaultsOf(KNN), { k: 20, seed: 0 });
  });

  it("resolves what a job leaves out to the table's defaults: config.json records them (one step of each kind)", async () => {
    const pre = nodePath.join(tmp, 'pretrain');
    const err = await run({
      kind: 'pretrain',
      data: BUILTIN_SAMPLE_DIR,
      preset: 'digpt-micro-32',
      teacher: 'pixels',
      out: pre,
      steps: 1,
      batch: 4,
      workers: 1,
    });
    assert.equal(err, undefined);
    const p = readRunConfig(pre);
    assert.ok(p.kind === 'pretrain');
    assert.equal(p.objective, PRETRAIN_DEFAULTS.objective);
    assert.equal(p.accum, PRETRAIN_DEFAULTS.accum);
    assert.equal(p.blr, PRETRAIN_DEFAULTS.blr);
    assert.equal(p.seed, PRETRAIN_DEFAULTS.seed);
    assert.equal(p.checkpoint_every, PRETRAIN_DEFAULTS.checkpoint_every);
    assert.equal(p.weight_decay, PRETRAIN_RECIPE.weight_decay);
    assert.equal(p.batch, 4);
    const ft = nodePath.join(tmp, 'finetune');
    const err2 = await run({
      kind: 'finetune',
      data: BUILTIN_SAMPLE_DIR,
      from: 'scratch',
      preset: 'digpt-micro-32',
      out: ft,
      steps: 1,
      batch: 4,
      drop_path: 0,
    });
    assert.equal(err2, undefined);
    const f = readRunConfig(ft);
    assert.ok(f.kind === 'finetune');
    assert.equal(f.drop_path, 0);
    for (const name of [
      'blr',
      'layer_decay',
      'smoothing',
      'mixup',
      'cutmix',
      'erase',
      'warmup_epochs',
    ] as const)
      assert.equal(f[name], FINETUNE_DEFAULTS[name], name);
    assert.equal(f.checkpoint_every, f.steps_per_epoch, 'checkpoint_every: one epoch');
  });
});
