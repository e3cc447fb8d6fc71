// One writer per run folder: RUN_DIR/.lock refuses a second writer (in this process, another CLI, a serve), takes
// over a dead holder's lock and says so.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunSummary } from '../../app/api/contract.js';
import { lockPath, RunLock, RunLockedError, type LockInfo } from '../../app/runs/lock.js';
import { PretrainRun } from '../../app/worker/pretrain-run.js';
import { Workbench } from '../../app/workbench/index.js';
import { initBackend } from '../../engine/backend.js';
import {
  deadPid,
  digpt,
  exited,
  images,
  MICRO,
  sandbox,
  spawnDigpt,
  TRAIN,
  trainedSteps,
  untilOutput,
} from './runs-helpers.js';

before(async () => {
  await initBackend();
});

const box = sandbox('digpt-lock-');
const folder = (name: string): string => {
  const d = nodePath.join(box.dir, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
};

describe('RunLock', () => {
  it('refuses a second writer, naming pid, host and start time, and lets the next one in once released', async () => {
    const dir = folder('a');
    const a = RunLock.acquire(dir, { command: 'digpt resume a' });
    const info = JSON.parse(fs.readFileSync(lockPath(dir), 'utf8')) as LockInfo;
    assert.equal(info.pid, process.pid);
    assert.equal(info.host, os.hostname());
    assert.equal(info.command, 'digpt resume a');
    assert.ok(!Number.isNaN(Date.parse(info.started)));
    assert.throws(
      () => RunLock.acquire(dir),
      (e: unknown) =>
        e instanceof RunLockedError &&
        e.message.includes(
          `run ${dir} is being written by pid ${process.pid} on ${os.hostname()} since ${info.started} (digpt resume a)`,
        ) &&
        /another job of this process/.test(e.message),
    );
    a.release();
    assert.ok(!fs.existsSync(lockPath(dir)));
    RunLock.acquire(dir).release();
  });

  it('takes over the lock of a process that no longer runs, saying whose it was', async () => {
    const dir = folder('stale');
    const pid = deadPid();
    const stale = {
      pid,
      host: os.hostname(),
      started: '2024-01-01T00:00:00.000Z',
      command: 'digpt resume x',
      thread: 0,
      token: 'old',
    };
    fs.writeFileSync(lockPath(dir), JSON.stringify(stale));
    const warnings: string[] = [];
    const lock = RunLock.acquire(dir, { onWarn: (t) => warnings.push(t) });
    assert.deepEqual(warnings, [
      `took over the lock of run ${dir} from pid ${pid} on ${os.hostname()} since 2024-01-01T00:00:00.000Z (digpt resume x), which no longer runs`,
    ]);
    assert.equal((JSON.parse(fs.readFileSync(lockPath(dir), 'utf8')) as LockInfo).pid, process.pid);
    lock.release();
  });

  it("never takes over another host's lock (its process cannot be checked from here)", async () => {
    const dir = folder('remote');
    const remote = {
      pid: deadPid(),
      host: `not-${os.hostname()}`,
      started: '2024-01-01T00:00:00.000Z',
      command: '',
      thread: 0,
      token: 't',
    };
    fs.writeFileSync(lockPath(dir), JSON.stringify(remote));
    assert.throws(
      () => RunLock.acquire(dir),
      /is being written by pid \d+ on not-.* cannot be checked from here \(delete .*\.lock if it does not\)/,
    );
    assert.ok(fs.existsSync(lockPath(dir)));
  });

  it('a release does not remove a lock that another writer has taken since', async () => {
    const dir = folder('taken');
    const a = RunLock.acquire(dir);
    const other = {
      pid: process.pid,
      host: os.hostname(),
      started: new Date().toISOString(),
      command: 'other',
      thread: 9,
      token: 'theirs',
    };
    fs.writeFileSync(lockPath(dir), JSON.stringify(other));
    a.release();
    assert.equal((JSON.parse(fs.readFileSync(lockPath(dir), 'utf8')) as LockInfo).token, 'theirs');
  });

  it('PretrainRun takes it on create and resume: a second resume is refused before metrics.jsonl is touched', async () => {
    const dir = nodePath.join(box.dir, 'run');
    const data = images(6, 36, 1);
    const a = PretrainRun.create(dir, { ...MICRO, steps: 3 }, data);
    await a.runSteps(3);
    assert.throws(() => PretrainRun.resume(dir, data), RunLockedError);
    a.dispose();
    const b = PretrainRun.resume(dir, data);
    // a step past the checkpoint of step 2 is cut back, so a second writer would have lost it
    fs.appendFileSync(nodePath.join(dir, 'metrics.jsonl'), `${JSON.stringify({ step: 3, loss: 1 })}\n`);
    const before = fs.readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8');
    assert.throws(() => PretrainRun.resume(dir, data), /is being written by pid/);
    assert.equal(fs.readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8'), before);
    b.dispose();
    assert.ok(!fs.existsSync(lockPath(dir)));
  });
});

describe('one writer across processes', () => {
  it('two digpt resume of one run: the second refuses naming the holder, and no step is logged twice', async () => {
    const run = nodePath.join(box.dir, 'cli-run');
    // a run of many steps, cut after its checkpoint of step 2
    const first = spawnDigpt(box, [
      'pretrain',
      ...TRAIN,
      '--steps',
      '400',
      '--checkpoint-every',
      '2',
      '--out',
      run,
      '--json',
    ]);
    const end = exited(first);
    assert.ok(await untilOutput(first, /"event":"pretrain","done":3/), 'the run reached step 3');
    first.kill('SIGKILL');
    await end;
    const a = spawnDigpt(box, ['resume', run, '--json']);
    const aEnd = exited(a);
    try {
      // the first resume holds the lock once it trains
      assert.ok(await untilOutput(a, /"event":"pretrain"/), 'the first resume trains');
      const b = spawnDigpt(box, ['resume', run, '--json']);
      const bEnd = exited(b);
      const timer = setTimeout(() => b.kill('SIGKILL'), 60_000);
      const rb = await bEnd;
      clearTimeout(timer);
      assert.notEqual(rb.code, 0);
      assert.match(
        rb.stdout + rb.stderr,
        new RegExp(`run ${run} is being written by pid \\d+ on ${os.hostname()} since `),
      );
    } finally {
      a.kill('SIGKILL');
      await aEnd;
    }
    const steps = trainedSteps(run);
    assert.ok(steps.length >= 3, `steps ${steps.join(',')}`);
    assert.deepEqual(
      steps,
      Array.from({ length: steps.length }, (_, i) => i + 1),
    );
  });

  it('a digpt resume of a run that the workbench (digpt serve) is training is refused', async () => {
    const wb = new Workbench({ workspace: nodePath.join(box.dir, 'ws-serve'), watch: false });
    try {
      const updates: RunSummary[] = [];
      wb.on((name, payload) => {
        if (name === 'run.update') updates.push(payload as RunSummary);
      });
      const r = await wb.handle('runs.launch', {
        kind: 'pretrain',
        dataset: 'builtin-sample',
        preset: 'digpt-micro-32',
        teacher: 'pixels',
        objective: 'digpt',
        steps: 2000,
        batch: 4,
        accum: 1,
        blr: 1e-3,
        seed: 0,
        workers: 1,
      });
      assert.ok(r.ok, JSON.stringify(r));
      const s = r.value as RunSummary;
      const t0 = Date.now();
      while (!updates.some((u) => u.id === s.id && u.step >= 1)) {
        assert.ok(Date.now() - t0 < 120_000, 'the workbench run did not start');
        await new Promise((res) => setTimeout(res, 50));
      }
      const cli = digpt(box, ['resume', s.dir]);
      assert.equal(cli.status, 1, cli.stderr);
      assert.match(
        cli.stderr,
        new RegExp(`run ${s.dir} is being written by pid \\d+ on ${os.hostname()} since `),
      );
      assert.ok((await wb.handle('runs.control', { id: s.id, action: 'stop' })).ok);
    } finally {
      await wb.close();
    }
  });

  it('the workbench refused a run another process writes: the run is idle with the reason, not failed', async () => {
    const wb = new Workbench({ workspace: nodePath.join(box.dir, 'ws-idle'), watch: false });
    // another process that holds the lock: alive for the length of the test
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)']);
    try {
      const updates: RunSummary[] = [];
      wb.on((name, payload) => {
        if (name === 'run.update') updates.push(payload as RunSummary);
      });
      const r = await wb.handle('runs.launch', {
        kind: 'pretrain',
        dataset: 'builtin-sample',
        preset: 'digpt-micro-32',
        teacher: 'pixels',
        objective: 'digpt',
        steps: 2,
        batch: 4,
        accum: 1,
        blr: 1e-3,
        seed: 0,
        workers: 1,
      });
      assert.ok(r.ok, JSON.stringify(r));
      const s = r.value as RunSummary;
      const settled = async (): Promise<RunSummary> => {
        const t0 = Date.now();
        for (;;) {
          const last = updates.filter((u) => u.id === s.id).at(-1);
          if (last && ['done', 'failed', 'idle', 'stopped'].includes(last.status)) return last;
          assert.ok(Date.now() - t0 < 120_000, 'the run did not settle');
          await new Promise((res) => setTimeout(res, 50));
        }
      };
      assert.equal((await settled()).status, 'done');
      const info = {
        pid: holder.pid,
        host: os.hostname(),
        started: new Date().toISOString(),
        command: 'digpt resume (elsewhere)',
        thread: 0,
        token: 'x',
      };
      fs.writeFileSync(lockPath(s.dir), JSON.stringify(info));
      updates.length = 0;
      // 'done' comes before the job's thread is gone; the resume is taken once it is
      const t0 = Date.now();
      for (;;) {
        const c = await wb.handle('runs.control', { id: s.id, action: 'resume' });
        if (c.ok) break;
        assert.match(JSON.stringify(c), /already running/);
        assert.ok(Date.now() - t0 < 30_000, JSON.stringify(c));
        await new Promise((res) => setTimeout(res, 50));
      }
      const last = await settled();
      assert.equal(last.status, 'idle');
      assert.match(
        last.error ?? '',
        new RegExp(`is being written by pid ${holder.pid} on .*\\(digpt resume \\(elsewhere\\)\\)`),
      );
      // the lock is the other process's: the workbench did not remove it
      assert.equal((JSON.parse(fs.readFileSync(lockPath(s.dir), 'utf8')) as LockInfo).pid, holder.pid);
    } finally {
      holder.kill();
      await wb.close();
    }
  });
});

after(() => {
  fs.rmSync(box.dir, { recursive: true, force: true });
});
