// Numeric flags of the real `digpt`: 0 where a setting must be positive, negatives, hex, exponents and blanks are
// refused with exit 2 and a message naming the flag, before any run folder exists.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import { parseNumber, joinNegativeValues, UsageError } from '../../app/cli/flags.js';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');
const BIN = nodePath.join(ROOT, 'bin', 'digpt.js');
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-flags-'));
const workspace = nodePath.join(tmp, 'ws');
const env = { ...process.env, DIGPT_CACHE: nodePath.join(tmp, 'cache'), DIGPT_WORKSPACE: workspace };

function digpt(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    // a flag that is not refused would start the command (serve runs until killed): at most a minute
    const child = spawn(process.execPath, [BIN, ...args], { cwd: tmp, env, timeout: 60_000 });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stderr }));
  });
}

const DATA = ['--data', BUILTIN_SAMPLE_DIR];
const PRETRAIN = ['pretrain', ...DATA, '--preset', 'digpt-micro-32', '--teacher', 'pixels', '--steps', '2'];
const FROM = [...DATA, '--from', nodePath.join(tmp, 'no-run')];

/** [arguments, the message expected on stderr]. */
const CASES: [string[], RegExp][] = [
  [[...PRETRAIN, '--batch', '0'], /^digpt: --batch: Too small: expected number to be >0 \(got 0\)/],
  [[...PRETRAIN, '--batch', '-3'], /^digpt: --batch: Too small: expected number to be >0 \(got -3\)/],
  [[...PRETRAIN, '--batch=-3'], /^digpt: --batch: Too small: expected number to be >0 \(got -3\)/],
  [[...PRETRAIN, '--accum', '0'], /^digpt: --accum: Too small: expected number to be >0 \(got 0\)/],
  [
    [...PRETRAIN, '--checkpoint-every', '0'],
    /^digpt: --checkpoint-every: Too small: expected number to be >0/,
  ],
  [
    ['pretrain', ...PRETRAIN.slice(1, -2), '--steps', '0'],
    /^digpt: --steps: Too small: expected number to be >0/,
  ],
  [['pretrain', ...PRETRAIN.slice(1, -2), '--steps', '0x2'], /^digpt: --steps: '0x2' is not a whole number/],
  [['pretrain', ...PRETRAIN.slice(1, -2), '--steps', '1e3'], /^digpt: --steps: '1e3' is not a whole number/],
  [['pretrain', ...PRETRAIN.slice(1, -2), '--steps', ' 5'], /^digpt: --steps: ' 5' is not a whole number/],
  [['pretrain', ...PRETRAIN.slice(1, -2), '--steps='], /^digpt: --steps: needs a value, got ''/],
  [
    ['pretrain', ...PRETRAIN.slice(1, -2), '--epochs', '0'],
    /^digpt: --epochs: Too small: expected number to be >0/,
  ],
  [['pretrain', ...PRETRAIN.slice(1, -2), '--epochs', '-1'], /^digpt: --epochs: Too small/],
  [[...PRETRAIN, '--blr', '0'], /^digpt: --blr: Too small: expected number to be >0/],
  [[...PRETRAIN, '--blr', '0x1'], /^digpt: --blr: '0x1' is not a decimal number/],
  [[...PRETRAIN, '--seed', '-1'], /^digpt: --seed: Too small: expected number to be >=0 \(got -1\)/],
  [[...PRETRAIN, '--seed', '1.5'], /^digpt: --seed: '1.5' is not a whole number/],
  [[...PRETRAIN, '--workers', '3'], /^digpt: --workers: .*\(got 3\); --workers takes 1, 2 or auto/],
  [[...PRETRAIN, '--workers', '0'], /^digpt: --workers: .*--workers takes 1, 2 or auto/],
  [[...PRETRAIN, '--img-size', '0'], /^digpt: --img-size: Too small/],
  [['finetune', ...FROM, '--batch', '0'], /^digpt: --batch: Too small/],
  [['finetune', ...FROM, '--smoothing', '1'], /^digpt: --smoothing: Too big: expected number to be <1/],
  [['knn', ...FROM, '--k', '0'], /^digpt: --k: Too small: expected number to be >0/],
  [['probe', ...FROM, '--epochs', '0'], /^digpt: --epochs: Too small/],
  [['demo', '--steps', '0'], /^digpt: --steps: Too small/],
  [['serve', '--port', '0x50'], /^digpt: --port: '0x50' is not a whole number/],
  [['serve', '--port', '70000'], /^digpt: --port: Too big: expected number to be <=65535/],
  [['serve', '--port', '-1'], /^digpt: --port: Too small/],
  [['experiment', 'ablations', '--seeds', '0'], /^digpt: --seeds: Too small/],
];

describe('digpt numeric flags', () => {
  it('refuse bad values with exit 2, naming the flag and why, and create no run folder', async () => {
    // two at a time: each is a process start, nothing more
    const results: { args: string[]; want: RegExp; status: number | null; stderr: string }[] = [];
    for (let i = 0; i < CASES.length; i += 2) {
      const pair = CASES.slice(i, i + 2);
      results.push(
        ...(await Promise.all(pair.map(async ([args, want]) => ({ args, want, ...(await digpt(args)) })))),
      );
    }
    for (const r of results) {
      assert.equal(r.status, 2, `${r.args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, r.want, r.args.join(' '));
      // the command's own usage follows the message
      assert.match(r.stderr, /\n\nusage: digpt /);
    }
    assert.equal(fs.existsSync(workspace), false, 'no workspace or run folder was made');
  });
});

describe("the job's own refusals", () => {
  it('a batch too large for memory (checked in the job): its message on stderr, exit 1, no run folder', async () => {
    const r = await digpt([...PRETRAIN, '--batch', '1000000']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      /^digpt: --batch 1000000 needs about [\d.]+ GiB of activations .*use --batch <= \d+/m,
    );
    assert.equal(
      fs.existsSync(nodePath.join(workspace, 'runs')) &&
        fs.readdirSync(nodePath.join(workspace, 'runs')).length > 0,
      false,
    );
  });
});

describe('parseNumber', () => {
  it('takes plain decimals only: Number() would read 0x2 as 2, 1e3 as 1000 and blanks as 0', () => {
    const int = { int: true, setting: 'steps' } as const;
    assert.equal(parseNumber('200', '--steps', int), 200);
    for (const bad of ['0x2', '1e3', '', ' 5', '5 ', '+5', '2.0', 'Infinity', 'NaN', '0b1'])
      assert.throws(() => parseNumber(bad, '--steps', int), UsageError, bad);
    const real = { int: false, setting: 'blr' } as const;
    assert.equal(parseNumber('1.5e-4', '--blr', real), 1.5e-4);
    assert.equal(parseNumber('.5', '--blr', real), 0.5);
    for (const bad of ['0x1', '', ' 1', '1e', 'Infinity', '-Infinity'])
      assert.throws(() => parseNumber(bad, '--blr', real), UsageError, bad);
    assert.equal(parseNumber('auto', '--workers', { int: true, setting: 'workers', auto: true }), 'auto');
    assert.throws(() => parseNumber('99999999999999999999', '--steps', int), /too large/);
  });

  it('joins `--flag -3` so that a negative number reaches the check that says why', () => {
    const flags = new Set(['batch', 'out']);
    assert.deepEqual(joinNegativeValues(['--batch', '-3', '--json'], flags), ['--batch=-3', '--json']);
    assert.deepEqual(joinNegativeValues(['--json', '-3'], flags), ['--json', '-3']);
    assert.deepEqual(joinNegativeValues(['--', '--batch', '-3'], flags), ['--', '--batch', '-3']);
  });
});
