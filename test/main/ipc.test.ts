// The IPC boundary of the main process (main/ipc.ts): sender check, contract validation, events, failures.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Channels } from '../../main/channels.js';
import { createEventForwarder, createIpcRouter, UNKNOWN_SENDER, type EventMessage } from '../../main/ipc.js';
import { createSenderCheck, type SenderInfo } from '../../main/security.js';
import { FakeDialogs, FakeWorkbench, MemoryLog, runSummary } from './fakes.js';

const APP_URL = 'app://workbench/index.html';
const WINDOW_ID = 7;
const trusted: SenderInfo = { senderId: WINDOW_ID, frameUrl: APP_URL };

function setup() {
  const workbench = new FakeWorkbench();
  const dialogs = new FakeDialogs();
  const log = new MemoryLog();
  const router = createIpcRouter({
    workbench,
    dialogs,
    log,
    isTrustedSender: createSenderCheck(() => WINDOW_ID, APP_URL),
  });
  return { workbench, dialogs, log, router };
}

describe('ipc router: senders', () => {
  it('serves the app window', async () => {
    const { workbench, router } = setup();
    workbench.answer = async () => [];
    assert.deepEqual(await router(Channels.request, trusted, ['runs.list', {}]), { ok: true, value: [] });
    assert.deepEqual(
      await router(Channels.request, { senderId: WINDOW_ID, frameUrl: `${APP_URL}#/runs` }, [
        'runs.list',
        {},
      ]),
      { ok: true, value: [] },
    );
  });

  for (const [what, sender] of [
    ['another webContents', { senderId: 8, frameUrl: APP_URL }],
    ['another page in the window', { senderId: WINDOW_ID, frameUrl: 'https://evil.example/index.html' }],
    ['another file in the window', { senderId: WINDOW_ID, frameUrl: 'file:///tmp/dropped.html' }],
    ['another app:// page in the window', { senderId: WINDOW_ID, frameUrl: 'app://workbench/other.html' }],
    ['a frame that is gone', { senderId: WINDOW_ID, frameUrl: undefined }],
  ] as const) {
    it(`refuses ${what} and logs it, on every channel`, async () => {
      const { workbench, dialogs, log, router } = setup();
      for (const [channel, args] of [
        [Channels.request, ['datasets.add', { path: '/etc' }]],
        [Channels.openFolder, []],
        [Channels.saveExport, ['x.safetensors']],
      ] as const) {
        assert.deepEqual(await router(channel, sender, args), { ok: false, error: UNKNOWN_SENDER });
      }
      assert.equal(workbench.calls.length, 0);
      assert.equal(dialogs.saveNames.length, 0);
      assert.equal(log.lines.length, 3);
      assert.match(log.lines[0] ?? '', /^warn ipc: refused digpt:request from unknown sender/);
    });
  }

  it('refuses everything while there is no window', async () => {
    const router = createIpcRouter({
      workbench: new FakeWorkbench(),
      dialogs: new FakeDialogs(),
      log: new MemoryLog(),
      isTrustedSender: createSenderCheck(() => null, APP_URL),
    });
    assert.deepEqual(await router(Channels.request, trusted, ['runs.list', {}]), {
      ok: false,
      error: UNKNOWN_SENDER,
    });
  });
});

describe('ipc router: validation with the contract', () => {
  it('refuses an unknown request name without reaching the workbench', async () => {
    const { workbench, router } = setup();
    for (const name of ['fs.readFile', '__proto__', 'toString', 42, undefined]) {
      const r = await router(Channels.request, trusted, [name, {}]);
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.error, /^unknown request/);
    }
    assert.equal(workbench.calls.length, 0);
  });

  it("refuses a bad payload with the contract's message naming the field", async () => {
    const { workbench, router } = setup();
    const r = await router(Channels.request, trusted, [
      'datasets.thumbnails',
      { id: 'd', split: 'train', offset: 0, limit: 1000 },
    ]);
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.error, /^datasets\.thumbnails: limit: /);
    const r2 = await router(Channels.request, trusted, ['datasets.add', { path: 3 }]);
    assert.match(r2.ok ? '' : r2.error, /^datasets\.add: path: /);
    const r3 = await router(Channels.request, trusted, ['runs.launch', { kind: 'pretrain', dataset: 'd' }]);
    assert.match(r3.ok ? '' : r3.error, /^runs\.launch: preset: /);
    assert.equal(workbench.calls.length, 0);
  });

  it('passes the parsed payload on (unknown keys stripped)', async () => {
    const { workbench, router } = setup();
    workbench.answer = async (_name, payload) => payload;
    const r = await router(Channels.request, trusted, ['runs.metrics', { id: 'run-1', extra: 'x' }]);
    assert.deepEqual(r, { ok: true, value: { id: 'run-1' } });
    assert.deepEqual(workbench.calls, [{ name: 'runs.metrics', payload: { id: 'run-1' } }]);
  });

  it("returns the workbench's failure as it is", async () => {
    const { workbench, router } = setup();
    workbench.answer = async () => {
      throw new Error('no dataset ds-1');
    };
    assert.deepEqual(await router(Channels.request, trusted, ['datasets.remove', { id: 'ds-1' }]), {
      ok: false,
      error: 'no dataset ds-1',
    });
  });

  it('turns a workbench that throws (a bug) into a failure, logged', async () => {
    const { workbench, log, router } = setup();
    workbench.handle = async () => {
      throw new Error('boom');
    };
    assert.deepEqual(await router(Channels.request, trusted, ['runs.list', {}]), {
      ok: false,
      error: 'boom',
    });
    assert.match(log.lines.join('\n'), /error ipc: digpt:request failed: Error: boom/);
  });
});

describe('ipc router: dialogs', () => {
  it('answers the chosen folder, or null when cancelled', async () => {
    const { dialogs, router } = setup();
    assert.deepEqual(await router(Channels.openFolder, trusted, []), { ok: true, value: '/data/cats' });
    dialogs.folder = null;
    assert.deepEqual(await router(Channels.openFolder, trusted, []), { ok: true, value: null });
  });

  it('answers the export path for a default file name, and refuses anything else', async () => {
    const { dialogs, router } = setup();
    assert.deepEqual(await router(Channels.saveExport, trusted, ['run-a-timm.safetensors']), {
      ok: true,
      value: '/home/u/run-a.safetensors',
    });
    assert.deepEqual(dialogs.saveNames, ['run-a-timm.safetensors']);
    for (const bad of [undefined, 3, '../../etc/passwd', 'a'.repeat(300)]) {
      const r = await router(Channels.saveExport, trusted, [bad]);
      assert.equal(r.ok, false);
    }
    assert.equal(dialogs.saveNames.length, 1);
  });
});

describe('event forwarding', () => {
  function forwarder() {
    const workbench = new FakeWorkbench();
    const log = new MemoryLog();
    const sent: { channel: string; message: EventMessage }[] = [];
    workbench.on(createEventForwarder((channel, message) => sent.push({ channel, message }), log));
    return { workbench, log, sent };
  }

  it('sends valid events on digpt:event as { name, payload }', () => {
    const { workbench, sent } = forwarder();
    workbench.emit('log', { level: 'info', text: 'backend: wasm' });
    workbench.emit('dataset.removed', { id: 'ds-1' });
    assert.deepEqual(sent, [
      { channel: 'digpt:event', message: { name: 'log', payload: { level: 'info', text: 'backend: wasm' } } },
      { channel: 'digpt:event', message: { name: 'dataset.removed', payload: { id: 'ds-1' } } },
    ]);
  });

  it('drops (and logs) unknown events and invalid payloads', () => {
    const { workbench, log, sent } = forwarder();
    workbench.emit('secret.dump', { all: true });
    workbench.emit('log', { level: 'loud', text: 'x' });
    workbench.emit('run.update', { id: 'run-1' });
    assert.deepEqual(sent, []);
    assert.equal(log.lines.length, 3);
    assert.match(log.lines[1] ?? '', /event log: level/);
  });

  it('a crashed worker reaches the window as a failed run, and main goes on', async () => {
    const { workbench, sent } = forwarder();
    // What the workbench emits when a job's worker thread dies: the run marked failed with the error.
    const failed = runSummary({
      status: 'failed',
      error: 'worker exited with code 1: RangeError: Array buffer allocation failed',
    });
    assert.doesNotThrow(() => workbench.emit('run.update', failed));
    assert.deepEqual(sent, [{ channel: 'digpt:event', message: { name: 'run.update', payload: failed } }]);
    // ...and requests are still served afterwards.
    const router = createIpcRouter({
      workbench,
      dialogs: new FakeDialogs(),
      log: new MemoryLog(),
      isTrustedSender: () => true,
    });
    workbench.answer = async () => [failed];
    assert.deepEqual(await router(Channels.request, trusted, ['runs.list', {}]), {
      ok: true,
      value: [failed],
    });
  });

  it('a window that cannot receive (closing) does not throw into the workbench', () => {
    const workbench = new FakeWorkbench();
    const log = new MemoryLog();
    workbench.on(
      createEventForwarder(() => {
        throw new Error('Object has been destroyed');
      }, log),
    );
    assert.doesNotThrow(() => workbench.emit('dataset.removed', { id: 'ds-1' }));
    assert.match(log.lines[0] ?? '', /warn ipc: could not send event dataset.removed/);
  });
});
