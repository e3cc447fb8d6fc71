// The workspace's own dataset registry: a FIFO, a broken or a foreign datasets.json stops the workbench with the
// file's name instead of blocking, crashing obscurely, or being overwritten (which would lose the registrations).
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, describe, it } from 'node:test';
import { Workbench } from '../../app/workbench/index.js';

const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-wsfiles-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function workspaceWith(name: string, make: (file: string) => void): string {
  const ws = nodePath.join(tmp, name);
  fs.mkdirSync(ws);
  make(nodePath.join(ws, 'datasets.json'));
  return ws;
}

describe('datasets.json', () => {
  it('a FIFO is refused by name, without opening it', () => {
    const ws = workspaceWith('fifo', (f) => spawnSync('mkfifo', [f]));
    assert.throws(() => new Workbench({ workspace: ws, watch: false }), /datasets\.json: not a regular file/);
  });

  it('broken JSON and a foreign shape are refused by name and left as they were', async () => {
    for (const [name, text, why] of [
      ['broken', '[{"id": "ds-1", "pa', /datasets\.json: not valid JSON/],
      ['foreign', '{"hello": 1}', /datasets\.json: not a dataset registry/],
    ] as const) {
      const ws = workspaceWith(name, (f) => fs.writeFileSync(f, text));
      assert.throws(() => new Workbench({ workspace: ws, watch: false }), why);
      assert.equal(fs.readFileSync(nodePath.join(ws, 'datasets.json'), 'utf8'), text);
    }
    // a good registry still loads
    const ws = workspaceWith('good', (f) => fs.writeFileSync(f, '[]'));
    const wb = new Workbench({ workspace: ws, watch: false });
    const listed = await wb.handle('datasets.list', {});
    assert.ok(listed.ok);
    await wb.close();
  });
});
