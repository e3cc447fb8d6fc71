// `npm run check:package`: packs the desktop app with `electron-builder --dir` (electron.config.ts) into a temporary
// folder and checks what the package holds: app.asar's files (the bundles, the page, the built-in sample and teacher;
// no TypeScript of ours, no source maps, neither tsx nor esbuild), what sits unpacked beside it (native addons,
// WebAssembly), and the fuses flipped in the binary.
// Electron's zip is downloaded from GitHub, which is not always reachable: `--electron-dist DIR` packs an unpacked
// Electron; without one, a stand-in binary that holds only Electron's fuse wire (its sentinel and 8 fuses, as Electron
// 45 has them) is packed, so the layout and the fuses are checked, and nothing can be run.
// Usage: node scripts/check-package.mjs [--electron-dist DIR] [--keep]
import { getCurrentFuseWire, FuseV1Options } from '@electron/fuses';
import { listPackage } from '@electron/asar';
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildMain } from './build-main.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { 'electron-dist': { type: 'string' }, keep: { type: 'boolean' } } });

/** The fuses electron.config.ts asks for, as the wire holds them ('0' off, '1' on). */
const EXPECTED_FUSES = {
  RunAsNode: '0',
  EnableNodeOptionsEnvironmentVariable: '0',
  EnableNodeCliInspectArguments: '0',
  EnableEmbeddedAsarIntegrityValidation: '1',
  OnlyLoadAppFromAsar: '1',
  GrantFileProtocolExtraPrivileges: '0',
};

/** An unpacked "Electron" whose binary is only the fuse wire, with Electron's defaults (runAsNode on, ...). */
function standInElectron(dir) {
  mkdirSync(join(dir, 'resources'), { recursive: true });
  const sentinel = Buffer.from('dL7pKGdnNz796PbbjQWNKmHXBZaB9tsX');
  const wire = Buffer.from([1, 8, ...Buffer.from('10110001')]);
  writeFileSync(join(dir, 'electron'), Buffer.concat([sentinel, wire]), { mode: 0o755 });
  writeFileSync(join(dir, 'LICENSE'), 'stand-in\n');
  writeFileSync(join(dir, 'version'), '45.5.0');
  return dir;
}

/** A copy of the install as `npm run dist` sees it: package.json, config, node_modules, built page, bundles, data. */
async function stageProject(dir) {
  for (const file of ['package.json', 'package-lock.json', 'electron.config.ts'])
    cpSync(join(root, file), join(dir, file));
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  // the sources too (app/ holds the built-in data): the check is that the package leaves them out
  for (const folder of ['app', 'engine', 'main', 'scaleout'])
    cpSync(join(root, folder), join(dir, folder), { recursive: true });
  const page = join(root, 'dist', 'renderer');
  if (existsSync(join(page, 'index.html'))) cpSync(page, join(dir, 'dist', 'renderer'), { recursive: true });
  else {
    mkdirSync(join(dir, 'dist', 'renderer'), { recursive: true });
    writeFileSync(
      join(dir, 'dist', 'renderer', 'index.html'),
      '<!doctype html><title>stand-in page</title>\n',
    );
  }
  await buildMain(join(dir, 'dist', 'main'), { quiet: true });
}

const failures = [];
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

const work = mkdtempSync(join(tmpdir(), 'digpt-package-'));
try {
  const project = join(work, 'project');
  mkdirSync(project);
  await stageProject(project);
  const electronDist = values['electron-dist']
    ? resolve(values['electron-dist'])
    : standInElectron(join(work, 'electron'));
  console.log(
    values['electron-dist']
      ? `packing with the Electron in ${electronDist}`
      : 'packing with a stand-in Electron binary (the fuse wire only): layout and fuses are checked, nothing runs',
  );
  const out = join(work, 'release');
  const r = spawnSync(
    join(
      root,
      'node_modules',
      '.bin',
      process.platform === 'win32' ? 'electron-builder.cmd' : 'electron-builder',
    ),
    [
      '--linux',
      '--dir',
      '--config',
      'electron.config.ts',
      `-c.electronDist=${electronDist}`,
      '-c.electronVersion=45.5.0',
      '-c.npmRebuild=false',
      `-c.directories.output=${out}`,
    ],
    { cwd: project, encoding: 'utf8', shell: process.platform === 'win32' },
  );
  if (r.status !== 0) {
    console.error(r.stdout, r.stderr);
    throw new Error(`electron-builder --dir failed with status ${r.status}`);
  }
  const unpackedApp = join(out, 'linux-unpacked');
  const resources = join(unpackedApp, 'resources');
  const files = listPackage(join(resources, 'app.asar'), {}).map((f) => f.replaceAll('\\', '/'));
  const has = (f) => files.includes(f);

  // the last three: the engine window's (main/engine-window*.ts)
  const bundles = [
    'index.js',
    'preload.cjs',
    'worker.js',
    'replica.js',
    'job-process.js',
    'engine.cjs',
    'engine-worker.js',
    'engine-preload.cjs',
  ];
  for (const f of bundles) check(has(`/dist/main/${f}`), `app.asar holds dist/main/${f}`);
  check(has('/dist/renderer/index.html'), 'app.asar holds the page, dist/renderer/index.html');
  check(has('/app/datasets/sample/fashion-mnist-sample'), 'app.asar holds the built-in sample');
  check(has('/app/teachers/fashion-vit-micro.safetensors'), 'app.asar holds the built-in teacher');
  check(has('/package.json'), 'app.asar holds package.json');
  check(
    has('/scaleout/digpt_torch/train.py'),
    'app.asar holds the scale-out trainer (digpt scaleout copies it)',
  );
  const ours = files.filter((f) => !f.startsWith('/node_modules/'));
  check(!ours.some((f) => /\.(ts|mts)$/.test(f)), 'no TypeScript of ours (app/, engine/, main/ sources)');
  check(!ours.some((f) => /^\/(main|engine)\b/.test(f)), 'no main/ or engine/ folder');
  const data = ours.filter(
    (f) => f.startsWith('/app/') && !/^\/app\/(datasets(\/sample)?|teachers)$/.test(f),
  );
  check(
    data.every(
      (f) => f.startsWith('/app/datasets/sample/') || /^\/app\/teachers\/[^/]+\.safetensors$/.test(f),
    ),
    'of app/, only the built-in sample and teacher',
  );
  check(!files.some((f) => f.endsWith('.map')), 'no source maps');
  check(
    !files.some((f) => /\/node_modules\/(tsx|esbuild|@esbuild)(\/|$)/.test(f)),
    'neither tsx nor esbuild',
  );
  check(
    !files.some((f) => /\/node_modules\/webgpu(\/|$)/.test(f)),
    'no Dawn for Node (webgpu: it cannot map buffers inside Electron)',
  );
  for (const pkg of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-wasm', 'sharp', 'zod', 'chokidar'])
    check(has(`/node_modules/${pkg}/package.json`), `app.asar holds the dependency ${pkg}`);
  const unpacked = join(resources, 'app.asar.unpacked', 'node_modules');
  check(existsSync(join(unpacked, 'sharp')), 'sharp is unpacked beside the asar');
  check(
    existsSync(join(unpacked, '@tensorflow', 'tfjs-backend-wasm', 'dist', 'tfjs-backend-wasm-simd.wasm')),
    "tfjs-backend-wasm's .wasm files are unpacked beside the asar",
  );
  const binary = readdirSync(unpackedApp).find((f) => f === 'digpt-workbench');
  check(binary !== undefined, 'the binary is named digpt-workbench');
  const wire = await getCurrentFuseWire(join(unpackedApp, binary ?? 'digpt-workbench'));
  for (const [name, want] of Object.entries(EXPECTED_FUSES)) {
    const got = String.fromCharCode(wire[FuseV1Options[name]]);
    check(
      got === want,
      `fuse ${name} is ${want === '1' ? 'on' : 'off'}${got === want ? '' : ` (got ${got})`}`,
    );
  }
  console.log(`${files.length} entries in app.asar; ${failures.length} failed checks`);
} finally {
  if (values.keep) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
process.exit(failures.length === 0 ? 0 : 1);
