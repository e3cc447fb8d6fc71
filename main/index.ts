// Electron main process (placeholder): one sandboxed window showing the built renderer page.
import { app, BrowserWindow } from 'electron';
import { fileURLToPath } from 'node:url';

function createWindow(): void {
  const window = new BrowserWindow({
    width: 1280,
    height: 800,
    webPreferences: { contextIsolation: true, sandbox: true, nodeIntegration: false },
  });
  void window.loadFile(fileURLToPath(new URL('../renderer/index.html', import.meta.url)));
}

void app.whenReady().then(createWindow);
app.on('window-all-closed', () => app.quit());
