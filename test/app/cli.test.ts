// The `digpt` command on the built-in sample: scan, pretrain, kill -9 and resume to the same losses, export, errors.
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');
const BIN = nodePath.join(ROOT, 'bin', 'digpt.js');
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-cli-'));
// the workspace too: a run without --out goes to $DIGPT_WORKSPACE/runs, never to the home folder
const env = {
  ...process.env,
  DIGPT_CACHE: nodePath.join(tmp, 'cache'),
  DIGPT_WORKSPACE: nodePath.join(tmp, 'ws'),
};

function digpt(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { cwd: tmp, env, encoding: 'utf8' });
}

const TRAIN = [
  '--data',
  BUILTIN_SAMPLE_DIR,
  '--preset',
  'digpt-micro-32',
  '--teacher',
  'pixels',
  '--batch',
  '8',
  '--accum',
  '2',
  '--blr',
  '0.01',
  '--seed',
  '3',
];

/** Runs digpt and kills it with SIGKILL as soon as its stdout matches `when`. */
async function killAfter(args: string[], when: RegExp): Promise<void> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: tmp, env });
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      if (when.test(buf)) child.kill('SIGKILL');
    });
    child.on('exit', () => resolve());
    child.on('error', reject);
  });
}

function losses(run: string): number[] {
  return fs
    .readFileSync(nodePath.join(run, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { loss?: number })
    .filter((r) => r.loss !== undefined)
    .map((r) => r.loss as number);
}

describe('digpt datasets scan', () => {
  it('prints the sample per class and split, and JSON with --json', () => {
    const r = digpt('datasets', 'scan', BUILTIN_SAMPLE_DIR);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Sneaker/);
    const j = digpt('datasets', 'scan', BUILTIN_SAMPLE_DIR, '--json');
    const scan = JSON.parse(j.stdout) as { classes: string[]; kind: string };
    assert.equal(scan.kind, 'idx');
    assert.equal(scan.classes.length, 10);
  });
});

describe('digpt pretrain / resume / export', () => {
  const full = nodePath.join(tmp, 'full');

  it('trains on the sample, logging JSON events and writing the run folder', () => {
    const r = digpt('pretrain', ...TRAIN, '--steps', '6', '--checkpoint-every', '2', '--out', full, '--json');
    assert.equal(r.status, 0, r.stderr);
    const events = r.stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { event: string; step?: number; loss?: number });
    const steps = events.filter((e) => e.event === 'pretrain');
    assert.deepEqual(
      steps.map((e) => e.step),
      [1, 2, 3, 4, 5, 6],
    );
    assert.ok(steps.every((e) => Number.isFinite(e.loss)));
    const done = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; run?: string });
    assert.deepEqual(done.at(-1), { event: 'done', run: full, step: 6, stopped: false });
    const config = JSON.parse(fs.readFileSync(nodePath.join(full, 'config.json'), 'utf8')) as {
      model: { teacher_dim: number };
      steps: number;
    };
    assert.equal(config.steps, 6);
    assert.equal(config.model.teacher_dim, 4 * 4 * 3); // pixel targets: one patch
    assert.equal(losses(full).length, 6);
  });

  it('continues after kill -9 with exactly the losses of the uninterrupted run', async () => {
    const cut = nodePath.join(tmp, 'cut');
    const child = spawn(
      process.execPath,
      [BIN, 'pretrain', ...TRAIN, '--steps', '6', '--checkpoint-every', '2', '--out', cut, '--json'],
      {
        cwd: tmp,
        env,
      },
    );
    // kill the process once step 3 is logged: one step past the checkpoint of step 2
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        if (/"event":"pretrain","done":3/.test(buf)) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => resolve());
      child.on('error', reject);
    });
    await new Promise((r) => child.once('exit', r));
    assert.ok(
      losses(cut).length >= 3 && losses(cut).length < 6,
      `logged ${losses(cut).length} steps before the kill`,
    );
    const r = digpt('resume', cut, '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(losses(cut), losses(full));
  });

  it('exports timm, official D-iGPT and TF.js files', () => {
    for (const format of ['timm', 'digpt', 'tfjs']) {
      const r = digpt('export', full, '--format', format, '--json');
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { path: string; step: number };
      assert.equal(out.step, 6);
      if (format === 'tfjs') {
        const manifest = JSON.parse(fs.readFileSync(nodePath.join(out.path, 'model.json'), 'utf8')) as {
          weightsManifest: { weights: { name: string }[] }[];
        };
        assert.ok(
          manifest.weightsManifest[0]?.weights.some((w) => w.name === 'ar_blocks.0.attn1.qkv.weight'),
        );
        assert.ok(fs.statSync(nodePath.join(out.path, 'weights.bin')).size > 100_000);
      } else {
        const f = SafetensorsFile.open(out.path);
        const keys = f.keys();
        f.close();
        if (format === 'timm') {
          assert.ok(keys.includes('pos_embed') && keys.includes('blocks.2.mlp.fc2.weight'));
          assert.ok(!keys.some((k) => k.startsWith('ar_') || k.startsWith('kd_')));
        } else assert.ok(keys.includes('kd_enc2dec.weight') && keys.includes('ar_enc_norm.3.bias'));
      }
    }
  });

  it('starts a run from an official checkpoint with digpt import', () => {
    const official = nodePath.join(full, 'export', 'digpt.safetensors');
    const run = nodePath.join(tmp, 'imported');
    const r = digpt('import', official, ...TRAIN, '--steps', '1', '--out', run);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /started from .*digpt\.safetensors \(official D-iGPT names\)/);
    assert.ok(fs.existsSync(nodePath.join(run, 'checkpoints', 'step-00000000')));
  });
});

describe('digpt finetune / probe / knn', () => {
  const full = nodePath.join(tmp, 'full');
  const ft = nodePath.join(tmp, 'ft');
  const teacher = nodePath.join(tmp, 'teacher.safetensors');
  const FT = [
    '--data',
    BUILTIN_SAMPLE_DIR,
    '--batch',
    '16',
    '--seed',
    '1',
    '--blr',
    '0.002',
    '--warmup-epochs',
    '0.05',
  ];

  it('fine-tunes the pretrained encoder, evaluates on val, and exports a classifier that serves as a teacher', () => {
    const r = digpt(
      'finetune',
      ...FT,
      '--from',
      full,
      '--steps',
      '4',
      '--out',
      ft,
      '--export',
      teacher,
      '--json',
    );
    assert.equal(r.status, 0, r.stderr);
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; val_top1?: number });
    assert.deepEqual(events.filter((e) => e.event === 'finetune').length, 4);
    const ev = events.find((e) => e.event === 'eval');
    assert.ok(ev && typeof ev.val_top1 === 'number' && ev.val_top1 >= 0 && ev.val_top1 <= 1);
    const t = digpt(
      'pretrain',
      ...TRAIN.map((a) => (a === 'pixels' ? teacher : a)),
      '--steps',
      '1',
      '--out',
      nodePath.join(tmp, 'with-teacher'),
    );
    assert.equal(t.status, 0, t.stderr);
    const cfg = JSON.parse(fs.readFileSync(nodePath.join(tmp, 'with-teacher', 'config.json'), 'utf8')) as {
      model: { teacher_dim: number; teacher_grid: number };
    };
    assert.deepEqual([cfg.model.teacher_grid, cfg.model.teacher_dim], [8, 64]);
    // the fine-tuning run folder itself names its newest checkpoint as a teacher
    const d = digpt(
      'pretrain',
      ...TRAIN.map((a) => (a === 'pixels' ? ft : a)),
      '--steps',
      '1',
      '--out',
      nodePath.join(tmp, 'with-run'),
    );
    assert.equal(d.status, 0, d.stderr);
  });

  it('resumes a killed fine-tuning run to the same losses', async () => {
    const a = nodePath.join(tmp, 'ft-a');
    const b = nodePath.join(tmp, 'ft-b');
    const args = ['finetune', ...FT, '--from', full, '--steps', '4', '--checkpoint-every', '2', '--json'];
    assert.equal(digpt(...args, '--out', a).status, 0);
    await killAfter([...args, '--out', b], /"event":"finetune","done":3/);
    const r = digpt('resume', b, '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(losses(b), losses(a));
  });

  it('probes and k-NNs a frozen encoder, reporting val top-1', () => {
    for (const cmd of ['probe', 'knn']) {
      const r = digpt(
        cmd,
        '--data',
        BUILTIN_SAMPLE_DIR,
        '--from',
        full,
        ...(cmd === 'probe' ? ['--epochs', '5'] : []),
        '--json',
      );
      assert.equal(r.status, 0, r.stderr);
      const res = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as {
        event: string;
        kind: string;
        top1: number;
        val: number;
      };
      assert.equal(res.event, 'result');
      assert.equal(res.kind, cmd);
      assert.equal(res.val, 300);
      // ten classes: a pretrained encoder's features are far better than chance even after 6 steps
      assert.ok(res.top1 > 0.2 && res.top1 <= 1, `${cmd} top-1 ${res.top1}`);
    }
  });
});

describe('digpt demo', () => {
  it('pretrains with the built-in teacher and probes the result (two steps here; npm run demo runs 120)', () => {
    const out = nodePath.join(tmp, 'demo');
    const r = digpt('demo', '--steps', '2', '--out', out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /probe top-1 on the validation split: \d+\.\d\d%/);
    assert.match(r.stdout, new RegExp(`demo: run folder ${out.replace(/[.]/g, '\\.')}`));
    const cfg = JSON.parse(fs.readFileSync(nodePath.join(out, 'config.json'), 'utf8')) as {
      teacher: string;
      model: { teacher_dim: number };
    };
    assert.match(cfg.teacher, /app\/teachers\/fashion-vit-micro\.safetensors$/);
    assert.equal(cfg.model.teacher_dim, 64);
  });
});

describe('digpt errors name the thing', () => {
  it('an unknown flag, an unknown preset, a missing folder, a bad teacher file', () => {
    let r = digpt('pretrain', ...TRAIN, '--epoch', '2');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /Unknown option '--epoch'/);
    r = digpt(
      'pretrain',
      ...TRAIN.map((a) => (a === 'digpt-micro-32' ? 'digpt-huge' : a)),
      '--steps',
      '1',
      '--out',
      nodePath.join(tmp, 'x1'),
    );
    assert.equal(r.status, 1);
    assert.match(r.stderr, /unknown preset 'digpt-huge'; known presets: digpt-micro-32/);
    r = digpt(
      'pretrain',
      ...TRAIN.map((a) => (a === BUILTIN_SAMPLE_DIR ? '/no/such/dir' : a)),
      '--steps',
      '1',
      '--out',
      nodePath.join(tmp, 'x2'),
    );
    assert.equal(r.status, 1);
    assert.match(r.stderr, /dataset folder \/no\/such\/dir does not exist/);
    const bad = nodePath.join(tmp, 'teacher.safetensors');
    fs.writeFileSync(bad, 'not a checkpoint at all');
    r = digpt(
      'pretrain',
      ...TRAIN.map((a) => (a === 'pixels' ? bad : a)),
      '--steps',
      '1',
      '--out',
      nodePath.join(tmp, 'x3'),
    );
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`teacher ${bad.replace(/[.]/g, '\\.')}: `));
    r = digpt('pretrain', ...TRAIN, '--img-size', '36', '--steps', '1', '--out', nodePath.join(tmp, 'x4'));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /image size 36 is not divisible by patch_size x clusters_per_side = 4 x 2/);
    r = digpt('export', nodePath.join(tmp, 'full'), '--format', 'onnx');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown --format 'onnx'; use one of timm, digpt, tfjs/);
  });
});
