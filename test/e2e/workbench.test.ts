// End to end: Debian's Chromium (playwright-core) against a real `digpt serve`: token, folder drop, a run, its chart,
// its patch order, a checkpoint export. Screenshots go to test-results/e2e/ for a person to look at.
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import sharp from 'sharp';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');
const SHOTS = nodePath.join(ROOT, 'test-results', 'e2e');
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-e2e-'));

let server: ChildProcess;
let url = '';
let base = '';
let ctx: BrowserContext;
let page: Page;

/** Waits until the chart's data-points attribute (the points it draws) satisfies `ok`. */
async function untilPoints(ok: (n: number) => boolean, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const n = Number(await page.getByTestId('chart-loss').getAttribute('data-points'));
    if (ok(n)) return;
    if (Date.now() - t0 > ms) throw new Error(`the loss chart has ${n} points after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shot(name: string): Promise<void> {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: nodePath.join(SHOTS, `${name}.png`), fullPage: true });
}

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  // the UI as `npm start` and `digpt serve` ship it
  const build = spawnSync(
    process.execPath,
    [nodePath.join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'error'],
    {
      cwd: ROOT,
      encoding: 'utf8',
    },
  );
  assert.equal(build.status, 0, build.stderr);
  // a cluster run's synced copy (digpt_torch writes this format): 3 steps made here, more appended by the test
  const made = spawnSync(
    process.execPath,
    [
      nodePath.join(ROOT, 'bin', 'digpt.js'),
      'pretrain',
      ...['--data', nodePath.join(ROOT, 'app', 'datasets', 'sample', 'fashion-mnist-sample')],
      ...[
        '--preset',
        'digpt-micro-32',
        '--teacher',
        'pixels',
        '--steps',
        '3',
        '--batch',
        '4',
        '--workers',
        '1',
      ],
      ...['--out', nodePath.join(tmp, 'cluster', 'vitb-cluster')],
    ],
    { cwd: tmp, encoding: 'utf8', env: { ...process.env, DIGPT_CACHE: nodePath.join(tmp, 'cache') } },
  );
  assert.equal(made.status, 0, made.stderr);
  fs.cpSync(nodePath.join(tmp, 'cluster', 'vitb-cluster'), nodePath.join(tmp, 'cluster', 'second'), {
    recursive: true,
  });
  fs.rmSync(nodePath.join(tmp, 'cluster', 'second', '.lock'), { force: true });
  server = spawn(
    process.execPath,
    [
      nodePath.join(ROOT, 'bin', 'digpt.js'),
      ...['serve', '--port', '0', '--workspace', nodePath.join(tmp, 'ws')],
      ...['--external', nodePath.join(tmp, 'cluster')],
    ],
    {
      cwd: tmp,
      env: { ...process.env, DIGPT_CACHE: nodePath.join(tmp, 'cache') },
    },
  );
  url = await new Promise<string>((resolve, reject) => {
    let out = '';
    server.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /open (http:\/\/127\.0\.0\.1:\d+\/\?token=\w+)/.exec(out);
      if (m) resolve(m[1] as string);
    });
    server.on('exit', (code) => reject(new Error(`digpt serve exited with ${code}`)));
  });
  base = url.replace(/\?token=.*$/, '');
  ctx = await chromium.launchPersistentContext(nodePath.join(tmp, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 860 },
  });
  page = ctx.pages()[0] ?? (await ctx.newPage());
});

after(async () => {
  await ctx?.close();
  server?.kill('SIGTERM');
});

describe('the workbench in Chromium against digpt serve', () => {
  it('refuses a connection without the token', async () => {
    const r = await page.goto(base);
    assert.equal(r?.status(), 401);
    assert.match((await page.textContent('body')) ?? '', /open the URL with the token/);
  });

  it('opens with the token and lists the built-in sample', async () => {
    await page.goto(url);
    await page.getByTestId('dataset-row').first().waitFor();
    assert.match((await page.getByTestId('dataset-row').first().textContent()) ?? '', /Fashion-MNIST sample/);
    await shot('1-datasets');
  });

  it('registers a folder dropped on the drop zone (CDP drag events): uploaded in chunks, scanned, listed', async () => {
    const dir = nodePath.join(tmp, 'shapes');
    for (const [cls, v] of [
      ['dark', 30],
      ['light', 220],
    ] as const) {
      fs.mkdirSync(nodePath.join(dir, cls), { recursive: true });
      for (let i = 0; i < 4; i++) {
        const png = await sharp({
          create: { width: 16, height: 16, channels: 3, background: { r: v, g: v - i, b: v } },
        })
          .png()
          .toBuffer();
        fs.writeFileSync(nodePath.join(dir, cls, `${i}.png`), png);
      }
    }
    // a real photo's size: over the 1 MiB message limit, so it must travel in several chunks
    const noise = Buffer.alloc(1024 * 640 * 3);
    for (let i = 0; i < noise.length; i += 4)
      noise.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 5)) >>> 0, i);
    const big = nodePath.join(dir, 'light', 'big.png');
    await sharp(noise, { raw: { width: 1024, height: 640, channels: 3 } })
      .png({ compressionLevel: 0, adaptiveFiltering: false })
      .toFile(big);
    assert.ok(fs.statSync(big).size > 1024 ** 2);
    const box = await page.getByTestId('drop-zone').boundingBox();
    assert.ok(box);
    const cdp = await ctx.newCDPSession(page);
    const at = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
    // what a file manager's drop of the folder gives the page: a directory entry (its path stays with the browser)
    const data = { items: [], files: [dir], dragOperationsMask: 1 };
    for (const type of ['dragEnter', 'dragOver', 'drop'] as const)
      await cdp.send('Input.dispatchDragEvent', { type, ...at, data });
    const row = page.locator('[data-testid="dataset-row"]', { hasText: 'shapes' });
    await row.waitFor({ timeout: 20_000 });
    assert.match((await row.textContent()) ?? '', /9 images/);
    const uploaded = nodePath.join(tmp, 'ws', 'uploads', 'shapes', 'light', 'big.png');
    assert.ok(fs.readFileSync(uploaded).equals(fs.readFileSync(big)), 'the big file arrived byte for byte');
    assert.match((await page.getByTestId('add-message').textContent()) ?? '', /added shapes \(uploaded to /);
    await shot('2-dropped');
  });

  it('launches a tiny pretraining run whose chart updates and whose patch-order view appears', async () => {
    await page.getByTestId('nav-launch').click();
    await page.getByTestId('launch-pretrain').click();
    await page.getByTestId('launch-dataset').selectOption('builtin-sample');
    await page.getByTestId('launch-objective').selectOption('digpt');
    await page.getByTestId('launch-teacher').selectOption('builtin');
    await page.getByTestId('launch-preset').selectOption('digpt-micro-32');
    await page.getByTestId('launch-length-by').selectOption('steps');
    await page.getByTestId('launch-steps').fill('8');
    await page.getByTestId('launch-batch').fill('8');
    await shot('3-launch');
    await page.getByTestId('launch-submit').click();
    const row = page.getByTestId('run-row').first();
    await row.waitFor({ timeout: 20_000 });
    await page
      .locator('[data-testid="run-row"][data-status="done"]:not([data-run-id^="external-"])')
      .first()
      .waitFor({ timeout: 180_000 });
    const chart = page.getByTestId('chart-loss');
    await chart.waitFor();
    await untilPoints((n) => n >= 8);
    await shot('4-run-charts');
    await page.getByTestId('tab-patch-order').click();
    await page.getByTestId('patch-order').waitFor();
    assert.ok((await page.getByTestId('patch-cluster').count()) >= 4, 'clusters drawn');
    await shot('5-patch-order');
  });

  it('exports the run checkpoint in timm names', async () => {
    await page.getByTestId('tab-checkpoints').click();
    await page.getByTestId('checkpoint-row').first().waitFor();
    await page.getByTestId('export-format').first().selectOption('timm');
    await page.getByTestId('export-button').first().click();
    const p = page.getByTestId('export-path').first();
    await p.waitFor({ timeout: 60_000 });
    const path = ((await p.textContent()) ?? '').trim();
    assert.match(path, /\.safetensors$/);
    assert.ok(fs.existsSync(path), `${path} exists`);
    await shot('6-exported');
  });

  it('follows a cluster run (digpt serve --external): listed as external, its chart and patch order live', async () => {
    await page.getByTestId('nav-runs').click();
    const row = page.locator('[data-testid="run-row"][data-run-id="external-vitb-cluster"]');
    await row.waitFor({ timeout: 20_000 });
    assert.match((await row.textContent()) ?? '', /external · /);
    // the second run in the folder, followed from the page (it was listed at start too: the same run comes back)
    await page.getByTestId('external-path').fill(nodePath.join(tmp, 'cluster', 'second'));
    await page.getByTestId('follow-external').locator('button[type="submit"]').click();
    await page.locator('[data-testid="run-row"][data-run-id="external-second"]').waitFor();
    await row.click();
    await page.getByTestId('chart-loss').waitFor();
    await untilPoints((n) => n === 3);
    // digpt_torch writes on: two steps and a patch-order record with its crops
    const dir = nodePath.join(tmp, 'cluster', 'vitb-cluster');
    for (const step of [4, 5])
      fs.appendFileSync(
        nodePath.join(dir, 'metrics.jsonl'),
        `${JSON.stringify({ step, loss: 4, loss_gen: 2, loss_dis: 2, lr: 1e-3, agreement: 0, img_per_s: 900, epoch: 0, time: new Date().toISOString() })}\n`,
      );
    const crops = Buffer.alloc(2 * 32 * 32 * 3, 128);
    fs.appendFileSync(
      nodePath.join(dir, 'patch-order.jsonl'),
      `${JSON.stringify({
        step: 5,
        order: [
          [2, 0, 3, 1],
          [1, 3, 0, 2],
        ],
        cluster_error: [
          [0.2, 0.4, 0.8],
          [1, 0.5, 0.25],
        ],
        samples: { count: 2, size: 32, pixels_b64: crops.toString('base64') },
      })}\n`,
    );
    await untilPoints((n) => n >= 5);
    await page.getByTestId('tab-patch-order').click();
    await page.getByTestId('patch-order').waitFor({ timeout: 20_000 });
    assert.ok((await page.getByTestId('patch-cluster').count()) >= 4, 'clusters drawn');
    await shot('7-external-run');
  });
});
