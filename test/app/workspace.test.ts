// One default workspace for the CLI, `digpt serve` and the desktop app: $DIGPT_WORKSPACE, else one folder chosen the same way.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { defaultWorkspace, newRunDir, runsDir, runStamp } from '../../app/workspace.js';

const home = '/home/ada';
const dirs =
  (...present: string[]) =>
  (p: string) =>
    present.includes(p);

describe('defaultWorkspace', () => {
  it('is $DIGPT_WORKSPACE when set, a relative one taken from the working directory', () => {
    assert.equal(defaultWorkspace({ env: { DIGPT_WORKSPACE: '/data/ws' }, home, isDir: dirs() }), '/data/ws');
    assert.equal(
      defaultWorkspace({ env: { DIGPT_WORKSPACE: 'ws' }, cwd: '/srv/project', home, isDir: dirs() }),
      '/srv/project/ws',
    );
    // an empty value is unset (as a shell's `DIGPT_WORKSPACE= digpt ...`)
    assert.equal(
      defaultWorkspace({ env: { DIGPT_WORKSPACE: '' }, home, isDir: dirs() }),
      `${home}/digpt-workbench`,
    );
  });

  it('is ~/Documents/D-iGPT Workbench on a desktop, ~/digpt-workbench without a Documents folder', () => {
    assert.equal(
      defaultWorkspace({ env: {}, home, isDir: dirs(`${home}/Documents`) }),
      `${home}/Documents/D-iGPT Workbench`,
    );
    assert.equal(defaultWorkspace({ env: {}, home, isDir: dirs() }), `${home}/digpt-workbench`);
  });

  it('keeps a workspace that already exists, so that nobody’s runs move', () => {
    assert.equal(
      defaultWorkspace({ env: {}, home, isDir: dirs(`${home}/Documents`, `${home}/digpt-workbench`) }),
      `${home}/digpt-workbench`,
    );
    assert.equal(
      defaultWorkspace({
        env: {},
        home,
        isDir: dirs(`${home}/Documents/D-iGPT Workbench`, `${home}/digpt-workbench`),
      }),
      `${home}/Documents/D-iGPT Workbench`,
    );
  });
});

describe('run folders', () => {
  it('are WORKSPACE/runs/<kind>-<stamp>, numbered when one second holds two', () => {
    const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-ws-'));
    assert.equal(runsDir(tmp), nodePath.join(tmp, 'runs'));
    const now = new Date('2026-03-04T05:06:07.890Z');
    assert.equal(runStamp(now), '20260304-050607');
    const a = newRunDir(runsDir(tmp), 'pretrain', now);
    assert.equal(a, nodePath.join(tmp, 'runs', 'pretrain-20260304-050607'));
    fs.mkdirSync(a, { recursive: true });
    const b = newRunDir(runsDir(tmp), 'pretrain', now);
    assert.equal(b, `${a}-2`);
    fs.mkdirSync(b);
    assert.equal(newRunDir(runsDir(tmp), 'pretrain', now), `${a}-3`);
  });
});
