// Installs the application menu of main/menu-template.ts (Electron-touching, kept thin).
import { app, Menu } from 'electron';
import { menuTemplate, type MenuActions } from './menu-template.js';

export function installMenu(actions: MenuActions): void {
  Menu.setApplicationMenu(
    Menu.buildFromTemplate(menuTemplate(app.name, process.platform === 'darwin', actions)),
  );
}
