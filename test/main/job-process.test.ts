// Process jobs in the desktop app: the utility-process transport (main/job-process.ts) over a fake utilityProcess,
// and the forked child's channel laid over a fake parentPort (main/fork-channel.ts).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { JobHandle, type Transport } from '../../app/jobs/host.js';
import type { WorkerEvent } from '../../app/jobs/protocol.js';
import { installForkChannel, type ParentPortLike } from '../../main/fork-channel.js';
import { utilityProcessLauncher, type UtilityChild, type UtilityFork } from '../../main/job-process.js';

/** Electron's UtilityProcess as far as the transport uses it: spawned, messages, exit. */
class FakeUtilityChild extends EventEmitter implements UtilityChild {
  pid: number | undefined = undefined;
  readonly posted: unknown[] = [];
  termSignals = 0;
  postMessage(message: unknown): void {
    this.posted.push(message);
  }
  kill(): boolean {
    this.termSignals++;
    return true;
  }
  spawn(pid: number): void {
    this.pid = pid;
    this.emit('spawn');
  }
  exit(code: number): void {
    this.pid = undefined;
    this.emit('exit', code);
  }
}

function setup() {
  const forks: { modulePath: string; args: string[]; options: Parameters<UtilityFork>[2] }[] = [];
  const child = new FakeUtilityChild();
  const fork: UtilityFork = (modulePath, args, options) => {
    forks.push({ modulePath, args, options });
    return child;
  };
  const killed: [number, string][] = [];
  const launch = utilityProcessLauncher(fork, '/app.asar/dist/main/job-process.js', (pid, signal) => {
    killed.push([pid, signal]);
    child.exit(0);
  });
  return { forks, child, killed, launch };
}

const step = (seq: number): WorkerEvent => ({
  seq,
  type: 'step',
  record: { step: seq, loss: 1, lr: 0.1, epoch: 0, img_per_s: 10 },
  order: new Int32Array([3, 1, 2, 0]),
});

describe('utility-process transport', () => {
  it('forks the job entry with the environment (unset variables left out) and heap flags, named', () => {
    const { forks, launch } = setup();
    launch({ DIGPT_BACKEND: 'tensorflow', UNSET: undefined }, ['--max-old-space-size=4096']);
    assert.deepEqual(forks, [
      {
        modulePath: '/app.asar/dist/main/job-process.js',
        args: [],
        options: {
          env: { DIGPT_BACKEND: 'tensorflow' },
          execArgv: ['--max-old-space-size=4096'],
          stdio: 'inherit',
          serviceName: 'D-iGPT job',
        },
      },
    ]);
  });

  it('carries a JobHandle: the start message out, events in, a clean exit', async () => {
    const { child, launch } = setup();
    const transport: Transport = launch({}, []);
    const handle = new JobHandle(transport);
    assert.equal(handle.transportKind, 'process');
    handle.send({ type: 'start', job: { kind: 'resume', run: '/ws/runs/a' } });
    handle.stop();
    assert.deepEqual(child.posted, [
      { seq: 0, type: 'start', job: { kind: 'resume', run: '/ws/runs/a' } },
      { seq: 1, type: 'stop' },
    ]);
    child.spawn(4242);
    assert.equal(handle.pid, 4242);
    const events: WorkerEvent[] = [];
    handle.on('event', (e) => events.push(e));
    child.emit('message', step(0));
    child.emit('message', { seq: 1, type: 'done', dir: '/ws/runs/a', step: 1, stopped: true });
    child.exit(0);
    assert.deepEqual(await handle.done(), { ok: true });
    assert.deepEqual(
      events.map((e) => e.type),
      ['step', 'done'],
    );
    assert.deepEqual(
      (events[0] as Extract<WorkerEvent, { type: 'step' }>).order,
      new Int32Array([3, 1, 2, 0]),
    );
  });

  it('a process that dies fails its job with its exit code', async () => {
    const { child, launch } = setup();
    const handle = new JobHandle(launch({}, []));
    child.spawn(7);
    child.exit(3);
    assert.deepEqual(await handle.done(), { ok: false, error: 'engine process exited with code 3' });
  });

  it('kill() is SIGKILL by pid (the job ignores SIGTERM, which UtilityProcess.kill sends); nothing is posted after', async () => {
    const { child, killed, launch } = setup();
    const handle = new JobHandle(launch({}, []));
    child.spawn(99);
    await handle.kill();
    assert.deepEqual(killed, [[99, 'SIGKILL']]);
    assert.equal(child.termSignals, 0);
    assert.deepEqual(await handle.done(), { ok: false, error: 'engine process was killed by SIGKILL' });
    assert.equal(handle.killed, true);
    handle.stop();
    assert.deepEqual(child.posted, []);
  });

  it('kill() before the spawn asks Electron to kill it, and kills by pid once it has one', async () => {
    const { child, killed, launch } = setup();
    const handle = new JobHandle(launch({}, []));
    const done = handle.kill();
    assert.equal(child.termSignals, 1);
    child.spawn(5);
    await done;
    assert.deepEqual(killed, [[5, 'SIGKILL']]);
  });
});

/** Electron's process.parentPort: messages arrive as { data }. */
class FakeParentPort extends EventEmitter implements ParentPortLike {
  readonly posted: unknown[] = [];
  postMessage(message: unknown): void {
    this.posted.push(message);
  }
  deliver(data: unknown): void {
    this.emit('message', { data });
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("a forked child's channel over parentPort", () => {
  function setupChild() {
    const proc = new EventEmitter() as EventEmitter & {
      send?: (...args: unknown[]) => boolean;
      disconnect?: () => void;
      readonly connected?: boolean;
    };
    const port = new FakeParentPort();
    const channel = installForkChannel(proc, port);
    return { proc, port, channel };
  }

  it("holds the parent's messages until start() (the host sends 'start' before the worker has loaded)", () => {
    const { proc, port, channel } = setupChild();
    const received: unknown[] = [];
    port.deliver({ seq: 0, type: 'start' });
    port.deliver({ seq: 1, type: 'pause' });
    // the worker's listener, attached as it loads
    proc.on('message', (m) => received.push(m));
    assert.deepEqual(received, []);
    channel.start();
    assert.deepEqual(received, [
      { seq: 0, type: 'start' },
      { seq: 1, type: 'pause' },
    ]);
    port.deliver({ seq: 2, type: 'stop' });
    assert.deepEqual(received.at(-1), { seq: 2, type: 'stop' });
  });

  it('send posts to the parent and calls back; parent messages arrive as "message"', async () => {
    const { proc, port, channel } = setupChild();
    channel.start();
    const received: unknown[] = [];
    proc.on('message', (m) => received.push(m));
    port.deliver({ seq: 0, type: 'start' });
    assert.deepEqual(received, [{ seq: 0, type: 'start' }]);
    const calls: unknown[] = [];
    // the two shapes app/worker/entry.ts uses: send(m, cb) and send(m, undefined, {}, cb)
    assert.equal(
      proc.send?.({ type: 'a' }, (e: unknown) => calls.push(e)),
      true,
    );
    proc.send?.({ type: 'b' }, undefined, {}, (e: unknown) => calls.push(e));
    assert.deepEqual(port.posted, [{ type: 'a' }, { type: 'b' }]);
    assert.deepEqual(calls, []);
    await tick();
    assert.deepEqual(calls, [null, null]);
    assert.equal(proc.connected, true);
  });

  it('disconnect stops listening, emits "disconnect" once, and later sends fail as a closed channel', async () => {
    const { proc, port } = setupChild();
    let disconnects = 0;
    proc.on('disconnect', () => disconnects++);
    proc.disconnect?.();
    proc.disconnect?.();
    assert.equal(proc.connected, false);
    assert.equal(port.listenerCount('message'), 0);
    await tick();
    assert.equal(disconnects, 1);
    const errors: unknown[] = [];
    assert.equal(
      proc.send?.({ type: 'late' }, (e: unknown) => errors.push(e)),
      false,
    );
    await tick();
    assert.deepEqual(port.posted, []);
    assert.match(String(errors[0]), /Channel closed/);
  });
});
