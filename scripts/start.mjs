// `npm start`: builds the renderer and the main/preload bundle, fetches Electron's binary if it is missing
// (npm ci skips Electron's install script, see README), then runs `electron .` with any extra arguments.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const electronDir = dirname(createRequire(import.meta.url).resolve('electron/package.json'));

/** Runs a command in the repository; if it fails, prints `failure` (when given) and exits with its status. */
function run(command, args, failure) {
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (r.status !== 0) {
    if (failure) console.error(failure);
    process.exit(r.status ?? 1);
  }
}

/** The Electron executable that node_modules/electron points at, or null if it was never downloaded. */
function electronBinary() {
  // As node_modules/electron/index.js resolves it, ELECTRON_OVERRIDE_DIST_PATH included.
  const pathFile = join(electronDir, 'path.txt');
  const executable = existsSync(pathFile) ? readFileSync(pathFile, 'utf8').trim() : '';
  const override = process.env.ELECTRON_OVERRIDE_DIST_PATH;
  if (!executable && !override) return null;
  const binary = override ? join(override, executable || 'electron') : join(electronDir, 'dist', executable);
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
  run(
    process.execPath,
    [join(electronDir, 'install.js')],
    "start: could not download Electron's binary (see the error above). On a machine with network access run\n" +
      'start:   node node_modules/electron/install.js\n' +
      'start: (or set ELECTRON_MIRROR / ELECTRON_OVERRIDE_DIST_PATH), then npm start again.',
  );
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
