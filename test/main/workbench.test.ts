// main's IPC router over the real Workbench of app/workbench (no Electron): the port fits, requests and events flow.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Workbench } from '../../app/workbench/index.js';
import { Channels } from '../../main/channels.js';
import { createEventForwarder, createIpcRouter, type WorkbenchPort } from '../../main/ipc.js';
import { FakeDialogs, MemoryLog } from './fakes.js';

describe('ipc router over the real Workbench', () => {
  const workspace = mkdtempSync(join(tmpdir(), 'digpt-main-ws-'));
  // The port main/ipc.ts serves: the real class must fit it.
  const workbench: WorkbenchPort = new Workbench({ workspace, watch: false });
  const log = new MemoryLog();
  const sent: unknown[] = [];
  const off = workbench.on(createEventForwarder((_channel, message) => sent.push(message), log));
  const router = createIpcRouter({ workbench, dialogs: new FakeDialogs(), log, isTrustedSender: () => true });
  const sender = { senderId: 1, frameUrl: 'app://workbench/index.html' };

  after(async () => {
    off();
    await workbench.close();
    rmSync(workspace, { recursive: true, force: true });
  });

  it('answers app.info and presets.list', async () => {
    const info = await router(Channels.request, sender, ['app.info', {}]);
    assert.equal(info.ok, true);
    assert.equal((info.ok && (info.value as { workspace: string }).workspace) || '', workspace);
    const presets = await router(Channels.request, sender, ['presets.list', {}]);
    assert.ok(presets.ok && Array.isArray(presets.value) && presets.value.length > 0);
  });

  it('refuses a dataset folder that does not exist, and bad payloads', async () => {
    const r = await router(Channels.request, sender, ['datasets.add', { path: join(workspace, 'missing') }]);
    assert.equal(r.ok, false);
    const bad = await router(Channels.request, sender, ['runs.control', { id: 'r', action: 'explode' }]);
    assert.match(bad.ok ? '' : bad.error, /^runs\.control: action: /);
    assert.deepEqual(
      log.lines.filter((l) => l.startsWith('error')),
      [],
    );
  });
});
