// Real signals to a real `digpt pretrain`: SIGTERM and SIGINT checkpoint at the next step and exit 143 / 130, `digpt
// resume` then reaches the uninterrupted run's losses; a second signal ends the job at once.
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');
const BIN = nodePath.join(ROOT, 'bin', 'digpt.js');
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-signals-'));
const env = {
  ...process.env,
  DIGPT_CACHE: nodePath.join(tmp, 'cache'),
  DIGPT_WORKSPACE: nodePath.join(tmp, 'ws'),
};
const STEPS = 20;
const TRAIN = [
  'pretrain',
  ...['--data', BUILTIN_SAMPLE_DIR, '--preset', 'digpt-micro-32', '--teacher', 'pixels'],
  ...['--batch', '8', '--accum', '2', '--blr', '0.01', '--seed', '5', '--steps', String(STEPS)],
  ...['--checkpoint-every', '1000'],
];

interface Line {
  event: string;
  text?: string;
  step?: number;
  signal?: string;
  run?: string;
  checkpoint?: string | null;
  exit?: number;
  stopped?: boolean;
}

/** Starts digpt; `onLine` sees each JSON line of stdout (with the child, to signal it). */
function start(
  args: string[],
  onLine: (l: Line, child: ChildProcess) => void,
  extraEnv = {},
  detached = false,
) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: tmp, env: { ...env, ...extraEnv }, detached });
  let buf = '';
  let stderr = '';
  const lines: Line[] = [];
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const text = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!text.startsWith('{')) continue;
      const l = JSON.parse(text) as Line;
      lines.push(l);
      onLine(l, child);
    }
  });
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, lines, exit, stderr: () => stderr };
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

function checkpoints(run: string): string[] {
  const dir = nodePath.join(run, 'checkpoints');
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((d) => d.startsWith('step-')) : [];
}

describe('digpt pretrain under signals', () => {
  const full = nodePath.join(tmp, 'full');

  it('runs uninterrupted for the reference losses', () => {
    const r = spawnSync(process.execPath, [BIN, ...TRAIN, '--out', full, '--json'], { cwd: tmp, env });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.equal(losses(full).length, STEPS);
  });

  it('SIGTERM: checkpoints at the next step, exits 143 saying so; digpt resume reaches the same losses', async () => {
    const run = nodePath.join(tmp, 'term');
    const p = start([...TRAIN, '--out', run, '--json'], (l, child) => {
      if (l.event === 'pretrain' && l.step === 2) child.kill('SIGTERM');
    });
    const exit = await p.exit;
    assert.deepEqual(exit, { code: 143, signal: null }, p.stderr());
    const last = p.lines.at(-1) as Line;
    assert.equal(last.event, 'interrupted');
    assert.equal(last.signal, 'SIGTERM');
    assert.equal(last.exit, 143);
    const step = last.step as number;
    assert.ok(step >= 2 && step < STEPS, `stopped at step ${step}`);
    assert.ok(p.lines.some((l) => l.event === 'done' && l.stopped === true && l.step === step));
    // the checkpoint of the stop step, complete, and the metrics up to it
    assert.equal(last.checkpoint, nodePath.join(run, 'checkpoints', `step-${String(step).padStart(8, '0')}`));
    assert.ok(fs.existsSync(nodePath.join(last.checkpoint, 'manifest.json')));
    assert.equal(losses(run).length, step);
    const r = spawnSync(process.execPath, [BIN, 'resume', run, '--json'], { cwd: tmp, env });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.deepEqual(losses(run), losses(full));
  });

  it('Ctrl-C (SIGINT to the process group) with the job in a child process: the child checkpoints, exit 130', async () => {
    const run = nodePath.join(tmp, 'int');
    // the terminal sends SIGINT to every process of its foreground group: the CLI and its job's process
    const p = start(
      [...TRAIN, '--out', run, '--json'],
      (l, child) => {
        if (l.event === 'pretrain' && l.step === 2) process.kill(-(child.pid as number), 'SIGINT');
      },
      { DIGPT_JOB_PROCESS: '1' },
      true,
    );
    const exit = await p.exit;
    assert.deepEqual(exit, { code: 130, signal: null }, p.stderr());
    const last = p.lines.at(-1) as Line;
    assert.deepEqual([last.event, last.signal, last.exit], ['interrupted', 'SIGINT', 130]);
    const step = last.step as number;
    assert.ok(step >= 2 && step < STEPS, `stopped at step ${step}`);
    assert.deepEqual(checkpoints(run), [`step-${String(step).padStart(8, '0')}`]);
    assert.equal(losses(run).length, step);
  });

  it('says it in plain mode too: "interrupted by SIGTERM at step N" and how to resume', async () => {
    const run = nodePath.join(tmp, 'plain');
    const p = start([...TRAIN, '--out', run], () => undefined);
    // plain progress goes to stderr: signal once the first step is reported there
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (/pretrain \[/.test(p.stderr())) {
          p.child.kill('SIGTERM');
          resolve();
        } else setTimeout(check, 20);
      };
      check();
    });
    const exit = await p.exit;
    assert.equal(exit.code, 143, p.stderr());
    assert.match(p.stderr(), /digpt: interrupted by SIGTERM at step \d+; `digpt resume .*plain` continues/);
  });

  it('a second signal ends the job at once, without a checkpoint (still 130)', async () => {
    const run = nodePath.join(tmp, 'twice');
    let sent = 0;
    // signalled while the job still loads its data: the first stop cannot have reached a step boundary yet
    const p = start(
      [...TRAIN, '--out', run, '--json'],
      (l, child) => {
        if (sent === 0 && l.event === 'log' && l.text?.startsWith('backend:')) {
          sent = 1;
          child.kill('SIGINT');
        } else if (sent === 1 && l.event === 'log' && l.text?.startsWith('SIGINT: stopping')) {
          sent = 2;
          child.kill('SIGINT');
        }
      },
      { DIGPT_CACHE: nodePath.join(tmp, 'cold-cache') },
    );
    const exit = await p.exit;
    assert.equal(sent, 2);
    assert.deepEqual(exit, { code: 130, signal: null }, p.stderr());
    const last = p.lines.at(-1) as Line;
    assert.deepEqual([last.event, last.signal, last.checkpoint], ['interrupted', 'SIGINT', null]);
    assert.ok(
      p.lines.some((l) => l.event === 'log' && /SIGINT again: ending the job now/.test(l.text ?? '')),
    );
    assert.deepEqual(checkpoints(run), []);
  });
});
