// window.digpt as the preload builds it (main/preload-api.ts), over a fake ipcRenderer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Channels } from '../../main/channels.js';
import { buildDigptApi, type IpcRendererPort } from '../../main/preload-api.js';

class FakeIpcRenderer implements IpcRendererPort {
  readonly invoked: { channel: string; args: unknown[] }[] = [];
  readonly listeners = new Map<string, ((event: unknown, ...args: unknown[]) => void)[]>();
  reply: (channel: string, args: unknown[]) => unknown = () => ({ ok: true, value: null });

  async invoke(channel: string, ...args: unknown[]): Promise<unknown> {
    this.invoked.push({ channel, args });
    return this.reply(channel, args);
  }
  on(channel: string, listener: (event: unknown, ...args: unknown[]) => void): this {
    this.listeners.set(channel, [...(this.listeners.get(channel) ?? []), listener]);
    return this;
  }
  /** main's webContents.send(channel, message), with an IpcRendererEvent the page must never see. */
  deliver(channel: string, message: unknown): void {
    const event = { sender: this, senderId: 0, ports: [] };
    for (const l of this.listeners.get(channel) ?? []) l(event, message);
  }
}

function setup() {
  const ipc = new FakeIpcRenderer();
  const files: unknown[] = [];
  const api = buildDigptApi(ipc, (file) => {
    files.push(file);
    return '/data/dropped';
  });
  return { ipc, api, files };
}

describe('window.digpt', () => {
  it('has exactly request, on, pathForFile, chooseFolder and chooseExportPath, all functions', () => {
    const { api } = setup();
    assert.deepEqual(Object.keys(api).sort(), [
      'chooseExportPath',
      'chooseFolder',
      'on',
      'pathForFile',
      'request',
    ]);
    for (const value of Object.values(api)) assert.equal(typeof value, 'function');
  });

  it('request invokes digpt:request with the name and payload and resolves to the Result', async () => {
    const { ipc, api } = setup();
    ipc.reply = () => ({ ok: true, value: [{ id: 'ds-1' }] });
    assert.deepEqual(await api.request('datasets.list', {}), { ok: true, value: [{ id: 'ds-1' }] });
    assert.deepEqual(ipc.invoked, [{ channel: Channels.request, args: ['datasets.list', {}] }]);
    ipc.reply = () => ({ ok: false, error: 'unknown sender' });
    assert.deepEqual(await api.request('runs.list', {}), { ok: false, error: 'unknown sender' });
  });

  it('request never rejects: a failed invoke or a malformed reply is a failed Result', async () => {
    const { ipc, api } = setup();
    ipc.reply = () => {
      throw new Error("No handler registered for 'digpt:request'");
    };
    assert.deepEqual(await api.request('runs.list', {}), {
      ok: false,
      error: "No handler registered for 'digpt:request'",
    });
    ipc.reply = () => 'hello';
    assert.deepEqual(await api.request('runs.list', {}), {
      ok: false,
      error: 'malformed reply from the main process',
    });
  });

  it('on delivers only the payload of its event, until unsubscribed', () => {
    const { ipc, api } = setup();
    const got: unknown[] = [];
    const off = api.on('run.update', (payload) => got.push(payload));
    const logs: unknown[] = [];
    api.on('log', (payload) => logs.push(payload));
    ipc.deliver(Channels.event, { name: 'run.update', payload: { id: 'run-1' } });
    ipc.deliver(Channels.event, { name: 'log', payload: { level: 'info', text: 'x' } });
    off();
    ipc.deliver(Channels.event, { name: 'run.update', payload: { id: 'run-2' } });
    assert.deepEqual(got, [{ id: 'run-1' }]);
    assert.deepEqual(logs, [{ level: 'info', text: 'x' }]);
    // One ipcRenderer listener whatever the number of subscriptions.
    assert.equal(ipc.listeners.get(Channels.event)?.length, 1);
  });

  it('a throwing subscriber does not stop the others', () => {
    const { ipc, api } = setup();
    const got: unknown[] = [];
    const error = console.error;
    console.error = () => {};
    try {
      api.on('dataset.removed', () => {
        throw new Error('bad listener');
      });
      api.on('dataset.removed', (p) => got.push(p));
      ipc.deliver(Channels.event, { name: 'dataset.removed', payload: { id: 'ds-1' } });
    } finally {
      console.error = error;
    }
    assert.deepEqual(got, [{ id: 'ds-1' }]);
  });

  it('pathForFile asks webUtils (the function given)', () => {
    const { api, files } = setup();
    const file = new File(['x'], 'cats');
    assert.equal(api.pathForFile(file), '/data/dropped');
    assert.deepEqual(files, [file]);
  });

  it('chooseFolder and chooseExportPath resolve to a path or null, and reject when refused', async () => {
    const { ipc, api } = setup();
    ipc.reply = (channel) => ({
      ok: true,
      value: channel === Channels.openFolder ? '/data/cats' : '/out/a.safetensors',
    });
    assert.equal(await api.chooseFolder(), '/data/cats');
    assert.equal(await api.chooseExportPath('a.safetensors'), '/out/a.safetensors');
    assert.deepEqual(ipc.invoked.slice(-1), [{ channel: Channels.saveExport, args: ['a.safetensors'] }]);
    ipc.reply = () => ({ ok: true, value: null });
    assert.equal(await api.chooseFolder(), null);
    assert.equal(await api.chooseExportPath('a.safetensors'), null);
    ipc.reply = () => ({ ok: false, error: 'unknown sender' });
    await assert.rejects(api.chooseFolder(), /unknown sender/);
  });
});
