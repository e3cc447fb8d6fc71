// The Workbench's request table: a handler for every request of the contract, payloads checked before a handler
// runs (the error names the field), answers checked after it, and the table typed by the contract.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, describe, it } from 'node:test';
import { z } from 'zod';
import { Requests, type RequestName } from '../../app/api/contract.js';
import {
  handleRequest,
  requestHandlers,
  type Handler,
  type Handlers,
  type WorkbenchParts,
} from '../../app/workbench/handlers.js';
import { Workbench } from '../../app/workbench/index.js';

const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-handlers-'));
process.env['DIGPT_CACHE'] = nodePath.join(tmp, 'cache');
const wb = new Workbench({ workspace: nodePath.join(tmp, 'ws'), watch: false });
after(async () => {
  await wb.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const names = Object.keys(Requests) as RequestName[];

/** The fields of a request's payload that it cannot go without (its object schema's non-optional keys). */
function requiredFields(name: RequestName): string[] {
  const schema = Requests[name][0];
  if (!(schema instanceof z.ZodObject)) return [];
  return Object.entries(schema.shape as Record<string, z.ZodType>)
    .filter(([, field]) => !field.safeParse(undefined).success)
    .map(([key]) => key);
}

// a handler answering a shape the contract does not allow is a type error (checked by `tsc`, which covers test/)
// @ts-expect-error: runs.export answers { path, tensors, step, rows? }
const wrongShape: Handler<'runs.export'> = () => ({ path: 1 });
// @ts-expect-error: a table without every request's handler is not a Handlers
const missing: Handlers = { 'app.info': () => ({ version: '0', backend: null, workspace: '' }) };

describe('request handlers', () => {
  it('has exactly one handler per request name of the contract', () => {
    // the table is built without touching its parts: they are read only when a request comes
    const table = requestHandlers({} as WorkbenchParts);
    assert.deepEqual(Object.keys(table).sort(), [...names].sort());
    for (const n of names) assert.equal(typeof table[n], 'function', n);
    assert.equal(typeof wrongShape, 'function');
    assert.equal(typeof missing, 'object');
  });

  it('refuses a payload that is not an object, for every request, before its handler runs', async () => {
    for (const n of names) {
      const r = await wb.handle(n, null);
      assert.equal(r.ok, false, n);
      if (!r.ok) assert.match(r.error, new RegExp(`^${n.replace('.', '\\.')}: payload: `), n);
    }
  });

  it('names every missing field of an empty payload', async () => {
    let checked = 0;
    for (const n of names) {
      const fields = requiredFields(n);
      if (fields.length === 0) continue;
      const r = await wb.handle(n, {});
      assert.equal(r.ok, false, n);
      if (r.ok) continue;
      assert.ok(r.error.startsWith(`${n}: `), r.error);
      for (const f of fields) assert.match(r.error, new RegExp(`(^|; |: )${f}: `), `${n}: ${f}`);
      checked++;
    }
    assert.ok(checked >= 10, `only ${checked} requests have required fields`);
    // a launch without its kind names the discriminator
    const launch = await wb.handle('runs.launch', {});
    assert.ok(!launch.ok && launch.error.startsWith('runs.launch: kind: '), JSON.stringify(launch));
  });

  it('names a field out of bounds and a field of the wrong type', async () => {
    const big = await wb.handle('datasets.thumbnails', {
      id: 'builtin-sample',
      split: 'train',
      offset: 0,
      limit: 500,
    });
    assert.ok(!big.ok);
    assert.match(big.error, /^datasets\.thumbnails: limit: /);
    const split = await wb.handle('datasets.thumbnails', {
      id: 'builtin-sample',
      split: 'holdout',
      offset: 0,
      limit: 1,
    });
    assert.ok(!split.ok);
    assert.match(split.error, /^datasets\.thumbnails: split: /);
    const id = await wb.handle('runs.metrics', { id: 7 });
    assert.ok(!id.ok);
    assert.match(id.error, /^runs\.metrics: id: /);
  });

  it('answers valid requests through the table', async () => {
    const info = await wb.handle('app.info', {});
    assert.ok(info.ok);
    const v = info.value as { version: string; backend: unknown; workspace: string };
    assert.equal(v.workspace, nodePath.join(tmp, 'ws'));
    // no job has started a backend yet (test/app/workbench.test.ts checks the report after one)
    assert.equal(v.backend, null);
    assert.match(v.version, /^\d+\.\d+\.\d+/);
    const presets = await wb.handle('presets.list', {});
    assert.ok(presets.ok && Array.isArray(presets.value) && presets.value.length > 0);
    const listed = await wb.handle('runs.list', {});
    assert.deepEqual(listed, { ok: true, value: [] });
    const gone = await wb.handle('runs.metrics', { id: 'no-such-run' });
    assert.ok(!gone.ok && gone.error.length > 0);
  });

  it('checks each answer against the contract, and refuses an unknown name', async () => {
    const real = requestHandlers({} as WorkbenchParts);
    // what a bug would answer at run time (past the types): caught as ours, naming the field
    const buggy: Handlers = { ...real, 'runs.list': () => [{ id: 3 }] as never };
    const r = await handleRequest(buggy, 'runs.list', {});
    assert.ok(!r.ok);
    assert.match(r.error, /^runs\.list response: 0\.id: /);
    const thrown: Handlers = {
      ...real,
      'presets.list': () => {
        throw new Error('boom');
      },
    };
    assert.deepEqual(await handleRequest(thrown, 'presets.list', {}), { ok: false, error: 'boom' });
    assert.deepEqual(await wb.handle('runs.delete', {}), {
      ok: false,
      error: "unknown request 'runs.delete'",
    });
  });
});
