// `npm start`: builds the renderer and the main/preload bundle, fetches Electron's binary if it is missing
// (npm ci skips Electron's install script, see README), then runs `electron .` with any extra arguments.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const electronDir = dirname(createRequire(import.meta.url).resolve('electron/package.json'));

/** Runs a command in the repository; exits with its status if it fails. */
function run(command, args) {
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

/** The Electron executable that node_modules/electron points at, or null if it was never downloaded. */
function electronBinary() {
  const pathFile = join(electronDir, 'path.txt');
  if (!existsSync(pathFile)) return null;
  const binary = join(electronDir, 'dist', readFileSync(pathFile, 'utf8').trim());
  return existsSync(binary) ? binary : null;
}

run('npm', ['run', 'build:renderer']);
run(process.execPath, [join(root, 'scripts', 'build-main.mjs')]);

let binary = electronBinary();
if (binary === null) {
  console.log(
    "start: Electron's binary is not installed (npm ci does not download it).\n" +
      'start: downloading it once with `node node_modules/electron/install.js` (needs access to GitHub releases or $ELECTRON_MIRROR)...',
  );
  run(process.execPath, [join(electronDir, 'install.js')]);
  binary = electronBinary();
  if (binary === null) {
    console.error('start: the Electron binary is still missing after install.js; see the messages above.');
    process.exit(1);
  }
}

const env = { ...process.env };
delete env.ELECTRON_RUN_AS_NODE;
const child = spawn(binary, ['.', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit', env });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
