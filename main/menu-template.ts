// The application menu as data (no Electron at run time, so it is testable); main/menu.ts installs it.
import type { MenuItemConstructorOptions } from 'electron';

export interface MenuActions {
  /** File > Add Dataset Folder...: the folder dialog, then datasets.add. */
  addDatasetFolder(): void;
  /** File > Open Workspace Folder: the workspace (runs, registry) in the file manager. */
  openWorkspace(): void;
}

export function menuTemplate(
  appName: string,
  isMac: boolean,
  actions: MenuActions,
): MenuItemConstructorOptions[] {
  const file: MenuItemConstructorOptions = {
    label: 'File',
    submenu: [
      { label: 'Add Dataset Folder…', accelerator: 'CmdOrCtrl+O', click: () => actions.addDatasetFolder() },
      { label: 'Open Workspace Folder', click: () => actions.openWorkspace() },
      { type: 'separator' },
      isMac ? { role: 'close' } : { role: 'quit' },
    ],
  };
  return [
    ...(isMac ? [{ label: appName, role: 'appMenu' } as MenuItemConstructorOptions] : []),
    file,
    { role: 'editMenu' },
    {
      label: 'View',
      submenu: [
        { role: 'reload' },
        { role: 'toggleDevTools' },
        { type: 'separator' },
        { role: 'resetZoom' },
        { role: 'zoomIn' },
        { role: 'zoomOut' },
        { type: 'separator' },
        { role: 'togglefullscreen' },
      ],
    },
    { role: 'windowMenu' },
  ];
}
