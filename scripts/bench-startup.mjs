// Start-up of the host processes: `digpt serve` (spawn until it prints its URL) and the Workbench as the Electron main
// process loads it (import + construct, in Node), each with its RSS and whether tfjs was loaded; medians of 5 runs.
// Usage: node scripts/bench-startup.mjs [REPO_ROOT]   (prints one line each, then a JSON line)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(process.argv[2] ?? join(import.meta.dirname, '..'));
const RUNS = 5;
const work = mkdtempSync(join(tmpdir(), 'digpt-startup-'));
const rssMb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function serveOnce(i) {
  const t0 = performance.now();
  // a hook in the serve process answers SIGUSR2 with whether tfjs is loaded (its engine is a global)
  const hook = `data:text/javascript,process.on('SIGUSR2',()=>process.stderr.write('TFJS='+(globalThis._tfengine!==undefined)+String.fromCharCode(10)))`;
  const child = spawn(
    process.execPath,
    ['--import', hook, join(root, 'bin', 'digpt.js'), 'serve', '--port', '0'],
    {
      env: { ...process.env, DIGPT_WORKSPACE: join(work, `serve-${i}`) },
    },
  );
  await new Promise((ok) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('open http')) ok();
    });
  });
  const ms = performance.now() - t0;
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  await new Promise((r) => setTimeout(r, 300));
  child.kill('SIGUSR2');
  await new Promise((r) => setTimeout(r, 200));
  const tfjs = /TFJS=true/.test(err);
  const rss = rssMb(child.pid);
  child.kill('SIGKILL');
  return { ms, rss, tfjs };
}

async function workbenchOnce(i) {
  const code = `const t0 = performance.now();
const { Workbench } = await import(${JSON.stringify(join(root, 'app', 'workbench', 'index.ts'))});
const wb = new Workbench({ workspace: ${JSON.stringify(join(work, `wb-${i}`))} });
const ms = performance.now() - t0;
console.log(JSON.stringify({ ms, rss: process.memoryUsage().rss / 1048576, tfjs: globalThis._tfengine !== undefined }));
await wb.close();`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: root,
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((r) => child.on('exit', r));
  return JSON.parse(out.trim().split('\n').pop());
}

const serve = [];
for (let i = 0; i < RUNS; i++) serve.push(await serveOnce(i));
const wb = [];
for (let i = 0; i < RUNS; i++) wb.push(await workbenchOnce(i));
rmSync(work, { recursive: true, force: true });
const s = {
  ms: median(serve.map((x) => x.ms)),
  rss_mb: median(serve.map((x) => x.rss)),
  tfjs: serve.some((x) => x.tfjs),
};
const w = {
  ms: median(wb.map((x) => x.ms)),
  rss_mb: median(wb.map((x) => x.rss)),
  tfjs: wb.some((x) => x.tfjs),
};
console.log(
  `digpt serve: ${s.ms.toFixed(0)} ms to its URL, RSS ${s.rss_mb.toFixed(0)} MB, tfjs ${s.tfjs ? 'loaded' : 'not loaded'}`,
);
console.log(
  `Workbench (the Electron main's import + construct, in Node): ${w.ms.toFixed(0)} ms, RSS ${w.rss_mb.toFixed(0)} MB, tfjs ${w.tfjs ? 'loaded' : 'not loaded'}`,
);
console.log(JSON.stringify({ kind: 'startup', runs: RUNS, serve: s, workbench: w }));
