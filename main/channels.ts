// The IPC channel names shared by the main process (main/ipc.ts) and the preload (main/preload-api.ts).

export const Channels = {
  /** invoke(name, payload) -> Result: one workbench request. */
  request: 'digpt:request',
  /** main -> window: { name, payload } of one workbench event. */
  event: 'digpt:event',
  /** invoke() -> Result<string | null>: the native "choose a folder" dialog. */
  openFolder: 'dialog.openFolder',
  /** invoke(defaultName) -> Result<string | null>: the native "save as" dialog for an export. */
  saveExport: 'dialog.saveExport',
} as const;

/** The channels the window may invoke (ipcMain.handle). */
export const INVOKE_CHANNELS = [Channels.request, Channels.openFolder, Channels.saveExport] as const;
export type InvokeChannel = (typeof INVOKE_CHANNELS)[number];
