// The application menu (main/menu-template.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MenuItemConstructorOptions } from 'electron';
import { menuTemplate } from '../../main/menu-template.js';

function find(items: MenuItemConstructorOptions[], label: string): MenuItemConstructorOptions | undefined {
  for (const item of items) {
    if (item.label === label) return item;
    const sub = Array.isArray(item.submenu) ? find(item.submenu, label) : undefined;
    if (sub) return sub;
  }
  return undefined;
}

describe('menu', () => {
  it('File > Add Dataset Folder… (Ctrl/Cmd+O) and Open Workspace Folder call their actions', () => {
    const calls: string[] = [];
    const template = menuTemplate('D-iGPT Workbench', false, {
      addDatasetFolder: () => calls.push('add'),
      openWorkspace: () => calls.push('workspace'),
    });
    const add = find(template, 'Add Dataset Folder…');
    assert.equal(add?.accelerator, 'CmdOrCtrl+O');
    (add?.click as () => void)();
    (find(template, 'Open Workspace Folder')?.click as () => void)();
    assert.deepEqual(calls, ['add', 'workspace']);
    assert.equal(template[0]?.label, 'File');
  });

  it('has the app menu first on macOS', () => {
    const template = menuTemplate('D-iGPT Workbench', true, { addDatasetFolder() {}, openWorkspace() {} });
    assert.equal(template[0]?.role, 'appMenu');
  });
});
