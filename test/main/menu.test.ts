// The application menu (main/menu-template.ts) and the packaged app's paths (main/packaging.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MenuItemConstructorOptions } from 'electron';
import { menuTemplate } from '../../main/menu-template.js';
import { esbuildBinaryPath, unpackedPath } from '../../main/packaging.js';

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

describe('packaged paths', () => {
  it('points at unpacked files', () => {
    assert.equal(
      unpackedPath('/opt/D-iGPT/resources/app.asar/node_modules/@esbuild/linux-x64/bin/esbuild'),
      '/opt/D-iGPT/resources/app.asar.unpacked/node_modules/@esbuild/linux-x64/bin/esbuild',
    );
    assert.equal(
      unpackedPath('C:\\D\\resources\\app.asar\\x.exe'),
      'C:\\D\\resources\\app.asar.unpacked\\x.exe',
    );
    assert.equal(unpackedPath('/home/u/digpt/node_modules/x'), '/home/u/digpt/node_modules/x');
  });

  it("finds esbuild's binary for the platform, or null", () => {
    const seen: string[] = [];
    const resolve = (id: string) => {
      seen.push(id);
      return `/r/app.asar/node_modules/${id}`;
    };
    assert.equal(
      esbuildBinaryPath(resolve, 'linux', 'x64'),
      '/r/app.asar.unpacked/node_modules/@esbuild/linux-x64/bin/esbuild',
    );
    esbuildBinaryPath(resolve, 'win32', 'arm64');
    assert.deepEqual(seen, ['@esbuild/linux-x64/bin/esbuild', '@esbuild/win32-arm64/esbuild.exe']);
    assert.equal(
      esbuildBinaryPath(
        () => {
          throw new Error('not found');
        },
        'darwin',
        'arm64',
      ),
      null,
    );
  });
});
