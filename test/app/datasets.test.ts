// Tests the dataset layer on real files in a temp folder: layouts, the seeded split, IDX, messy input, decoding
// to RGB, the decode cache, and special files (FIFOs, sockets, devices) and symbolic links, which are never followed out.
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';

import {
  BUILTIN_SAMPLE_DIR,
  cacheSideFor,
  formatScan,
  loadSplit,
  scanDataset,
  type DatasetScan,
  type FileItem,
  type SplitName,
} from '../../app/datasets/index.js';
import { entryPath } from '../../app/datasets/cache.js';
import { encodeIdx } from '../../app/datasets/idx.js';
import { valCount } from '../../app/datasets/split.js';
import { cleanup, gifFrames, greyPng, meanRgb, noisyPng, put, solid, tempDir } from './datasets-helpers.js';
import { failIfHangs, mkfifo, unixSocket } from './paths-helpers.js';

const FASHION_DIR = resolve(import.meta.dirname, '..', '..', '..', 'shared', 'datasets', 'fashion-mnist');

after(cleanup);

function split(scan: DatasetScan, name: SplitName) {
  const s = scan.splits.find((x) => x.name === name);
  assert.ok(s, `no ${name} split`);
  return s;
}

function files(scan: DatasetScan, name: SplitName): FileItem[] {
  const src = split(scan, name).source;
  assert.equal(src.kind, 'files');
  return src.kind === 'files' ? src.items : [];
}

/** The scan survives JSON unchanged (so `--json` output can be loaded later). */
function assertJsonSafe(scan: DatasetScan): void {
  assert.deepEqual(JSON.parse(JSON.stringify(scan)), scan);
}

describe('folder layouts', () => {
  test('ImageFolder with train/val/test splits', async () => {
    const dir = tempDir('splits');
    const red = await solid(6, 4, { r: 255, g: 0, b: 0 });
    const blue = await solid(5, 7, { r: 0, g: 0, b: 255 }, 'jpeg');
    const layout: Record<string, [number, number]> = { train: [4, 3], val: [2, 1], test: [1, 2] };
    for (const [s, [cats, dogs]] of Object.entries(layout)) {
      for (let i = 0; i < cats; i++) put(join(dir, s, 'cat', `c${i}.png`), red);
      for (let i = 0; i < dogs; i++) put(join(dir, s, 'dog', `d${i}.jpg`), blue);
    }
    put(join(dir, 'README.md'), '# my data\n');

    const scan = await scanDataset(dir);
    assert.equal(scan.kind, 'folder');
    assert.equal(scan.layout, 'splits');
    assert.deepEqual(scan.classes, ['cat', 'dog']);
    assert.deepEqual(
      scan.splits.map((s) => [s.name, s.origin, s.perClass]),
      [
        ['train', 'folder', [4, 3]],
        ['val', 'folder', [2, 1]],
        ['test', 'folder', [1, 2]],
      ],
    );
    assert.equal(scan.val.origin, 'folder');
    assert.equal(scan.images, 13);
    assert.deepEqual(scan.sizes, {
      count: 13,
      minWidth: 5,
      maxWidth: 6,
      minHeight: 4,
      maxHeight: 7,
      channels: { '3': 13 },
      formats: { png: 7, jpeg: 6 },
    });
    assert.deepEqual(scan.skipped, [{ path: 'README.md', code: 'not-an-image', reason: 'not an image' }]);
    assert.deepEqual(scan.warnings, []);
    assert.deepEqual(files(scan, 'val'), [
      { path: 'val/cat/c0.png', label: 0 },
      { path: 'val/cat/c1.png', label: 0 },
      { path: 'val/dog/d0.jpg', label: 1 },
    ]);
    assertJsonSafe(scan);

    const text = formatScan(scan);
    assert.match(text, /layout: split folders \(train\/, val\/, test\/\)/);
    assert.match(text, /class\s+train\s+val\s+test\s+total/);
    assert.match(text, /cat\s+4\s+2\s+1\s+7/);
    assert.match(text, /total\s+7\s+3\s+3\s+13/);
    assert.match(text, /README\.md\s+not an image/);

    const test_ = await loadSplit(scan, 'test', { side: 8, cacheDir: join(dir, '.cache') });
    assert.equal(test_.count, 3);
    assert.equal(test_.images.length, 3 * 8 * 8 * 3);
    assert.deepEqual([...test_.labels], [0, 1, 1]);
    assert.deepEqual(test_.classes, ['cat', 'dog']);
    const [r, g, b] = meanRgb(test_.images, 8, 0);
    assert.ok(r > 250 && g < 5 && b < 5, `red image decoded as ${r},${g},${b}`);
  });

  test('a flat folder is one unlabelled dataset with a carved val split', async () => {
    const dir = tempDir('flat');
    const img = await solid(3, 3, { r: 10, g: 20, b: 30 });
    for (let i = 0; i < 12; i++) put(join(dir, `img${String(i).padStart(2, '0')}.png`), img);
    const scan = await scanDataset(dir, { seed: 3 });
    assert.equal(scan.layout, 'flat');
    assert.deepEqual(scan.classes, []);
    assert.deepEqual(
      scan.splits.map((s) => [s.name, s.origin, s.count, s.unlabelled, s.perClass]),
      [
        ['train', 'folder', 11, 11, []],
        ['val', 'carved', 1, 1, []],
      ],
    );
    assert.deepEqual(scan.val, { origin: 'carved', fraction: 0.1, seed: 3 });
    const loaded = await loadSplit(scan, 'train', { side: 4, cacheDir: join(dir, '.cache') });
    assert.deepEqual([...loaded.labels], new Array(11).fill(-1));
    assert.match(formatScan(scan), /\(unlabelled\)\s+11\s+1\s+12/);
    await assert.rejects(
      loadSplit(scan, 'test', { side: 4, cacheDir: join(dir, '.cache') }),
      /no test split/,
    );
  });

  test('the seeded split is deterministic and stratified', async () => {
    const dir = tempDir('strat');
    const img = await solid(2, 2, { r: 1, g: 2, b: 3 });
    const sizes: Record<string, number> = { apple: 20, banana: 31, cherry: 7, date: 1 };
    for (const [cls, n] of Object.entries(sizes)) {
      for (let i = 0; i < n; i++) put(join(dir, cls, `${i}.png`), img);
    }
    const a = await scanDataset(dir, { seed: 42 });
    const b = await scanDataset(dir, { seed: 42 });
    const c = await scanDataset(dir, { seed: 43 });
    assert.deepEqual(files(a, 'val'), files(b, 'val'));
    assert.deepEqual(files(a, 'train'), files(b, 'train'));
    assert.notDeepEqual(files(a, 'val'), files(c, 'val'));

    assert.deepEqual(a.classes, ['apple', 'banana', 'cherry', 'date']);
    const expected = Object.values(sizes).map((n) => valCount(n, 0.1));
    assert.deepEqual(expected, [2, 3, 1, 0]);
    assert.deepEqual(split(a, 'val').perClass, expected);
    assert.deepEqual(
      split(a, 'train').perClass,
      Object.values(sizes).map((n, i) => n - (expected[i] as number)),
    );
    // train and val partition the files
    const all = [...files(a, 'train'), ...files(a, 'val')].map((f) => f.path).sort();
    assert.equal(new Set(all).size, 59);
    // a class of one image cannot be split: it stays in train, with a warning
    assert.deepEqual(
      a.warnings.map((w) => [w.code, w.class, w.split]),
      [['class-missing-from-split', 'date', 'val']],
    );
    // a class's choice depends only on its own files: adding a class leaves the others' val files alone
    for (let i = 0; i < 5; i++) put(join(dir, 'elder', `${i}.png`), img);
    const d = await scanDataset(dir, { seed: 42 });
    const names = (s: DatasetScan) => files(s, 'val').map((f) => f.path);
    assert.deepEqual(
      names(d).filter((p) => !p.startsWith('elder/')),
      names(a),
    );
    // valFraction 0: no val split
    const none = await scanDataset(dir, { valFraction: 0 });
    assert.deepEqual(
      none.splits.map((s) => s.name),
      ['train'],
    );
    assert.equal(none.val.origin, 'none');
  });
});

describe('IDX datasets', () => {
  test('Fashion-MNIST from ../shared/datasets', async () => {
    assert.ok(existsSync(FASHION_DIR), `${FASHION_DIR} is missing (the shared Fashion-MNIST copy)`);
    const scan = await scanDataset(FASHION_DIR);
    assert.equal(scan.kind, 'idx');
    assert.equal(scan.layout, 'idx');
    assert.deepEqual(scan.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    assert.deepEqual(
      scan.splits.map((s) => [s.name, s.origin, s.count]),
      [
        ['train', 'idx', 54000],
        ['val', 'carved', 6000],
        ['test', 'idx', 10000],
      ],
    );
    assert.deepEqual(split(scan, 'train').perClass, new Array(10).fill(5400));
    assert.deepEqual(split(scan, 'val').perClass, new Array(10).fill(600));
    assert.deepEqual(split(scan, 'test').perClass, new Array(10).fill(1000));
    assert.deepEqual(scan.sizes, {
      count: 70000,
      minWidth: 28,
      maxWidth: 28,
      minHeight: 28,
      maxHeight: 28,
      channels: { '1': 70000 },
      formats: { idx: 70000 },
    });
    assert.deepEqual(scan.skipped, []);

    // at side 28 the images are the file's bytes, grey copied to R, G and B
    const loaded = await loadSplit(scan, 'test', { side: 28, cacheDir: tempDir('fm-cache') });
    const rawImages = gunzipSync(readFileSync(join(FASHION_DIR, 't10k-images-idx3-ubyte.gz'))).subarray(16);
    const rawLabels = gunzipSync(readFileSync(join(FASHION_DIR, 't10k-labels-idx1-ubyte.gz'))).subarray(8);
    assert.equal(loaded.count, 10000);
    assert.equal(loaded.images.length, 10000 * 28 * 28 * 3);
    assert.deepEqual(loaded.labels, Int32Array.from(rawLabels));
    for (const i of [0, 4321, 9999]) {
      for (let p = 0; p < 28 * 28; p += 7) {
        for (let c = 0; c < 3; c++) {
          assert.equal(loaded.images[(i * 784 + p) * 3 + c], rawImages[i * 784 + p]);
        }
      }
    }
    assert.equal(loaded.files[1], 't10k-images-idx3-ubyte.gz#1');
  });

  test('the built-in sample', async () => {
    assert.ok(BUILTIN_SAMPLE_DIR.endsWith(join('app', 'datasets', 'sample', 'fashion-mnist-sample')));
    const scan = await scanDataset(BUILTIN_SAMPLE_DIR);
    assert.equal(scan.kind, 'idx');
    assert.deepEqual(scan.classes.slice(0, 3), ['T-shirt/top', 'Trouser', 'Pullover']);
    assert.equal(scan.classes.length, 10);
    assert.deepEqual(
      scan.splits.map((s) => [s.name, s.count]),
      [
        ['train', 2700],
        ['val', 300],
        ['test', 1000],
      ],
    );
    assert.deepEqual(scan.warnings, []);
    const cacheDir = tempDir('sample-cache');
    const val = await loadSplit(scan, 'val', { side: cacheSideFor(28), cacheDir });
    assert.equal(val.side, 32);
    assert.equal(val.count, 300);
    assert.equal(val.images.length, 300 * 32 * 32 * 3);
    // labels follow the scan's per-class counts
    const counts = new Array(10).fill(0);
    for (const l of val.labels) counts[l]++;
    assert.deepEqual(counts, split(scan, 'val').perClass);
    // the sample is the first records of the full set
    if (existsSync(FASHION_DIR)) {
      const full = gunzipSync(readFileSync(join(FASHION_DIR, 'train-labels-idx1-ubyte.gz'))).subarray(
        8,
        8 + 3000,
      );
      const mine = gunzipSync(readFileSync(join(BUILTIN_SAMPLE_DIR, 'train-labels-idx1-ubyte.gz'))).subarray(
        8,
      );
      assert.deepEqual(mine, full);
    }
  });

  test('bad IDX files are skipped with reasons', async () => {
    const dir = tempDir('badidx');
    const imgs = new Uint8Array(5 * 4 * 4).fill(9);
    put(join(dir, 'train-images-idx3-ubyte'), await encodeIdx([5, 4, 4], imgs, false));
    put(join(dir, 'train-labels-idx1-ubyte'), await encodeIdx([4], new Uint8Array([0, 1, 0, 1]), false));
    const full = await encodeIdx([3, 4, 4], imgs.subarray(0, 48), true);
    put(join(dir, 't10k-images-idx3-ubyte.gz'), full.subarray(0, full.length - 10));
    put(join(dir, 't10k-labels-idx1-ubyte.gz'), await encodeIdx([3], new Uint8Array([0, 1, 1]), true));
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.splits, []);
    assert.deepEqual(
      scan.skipped.map((s) => [s.path, s.code]),
      [
        ['t10k-images-idx3-ubyte.gz', 'bad-idx'],
        ['t10k-labels-idx1-ubyte.gz', 'bad-idx'],
        ['train-images-idx3-ubyte', 'bad-idx'],
        ['train-labels-idx1-ubyte', 'bad-idx'],
      ],
    );
    assert.match(scan.skipped[2]?.reason ?? '', /5 images but 4 labels/);
    assert.deepEqual(
      scan.warnings.map((w) => w.code),
      ['no-images'],
    );
  });
});

describe('messy folders', () => {
  test('bad files are skipped and listed, hidden ones ignored, unicode names work', async () => {
    const dir = tempDir('messy');
    const good = await solid(9, 7, { r: 0, g: 200, b: 0 }, 'jpeg');
    const trunc = await noisyPng(64, 64);
    put(join(dir, 'Mäntel', 'bild_①.png'), await greyPng(5, 5, 77));
    put(join(dir, 'Mäntel', 'sub', 'tief.webp'), await solid(4, 4, { r: 1, g: 1, b: 1 }, 'webp'));
    put(join(dir, 'Hemden', 'good.jpg'), good);
    put(join(dir, 'Hemden', 'corrupt.jpg'), Buffer.concat([good.subarray(0, 4), Buffer.alloc(300, 0x5a)]));
    put(join(dir, 'Hemden', 'trunc.png'), trunc.subarray(0, trunc.length >> 1));
    put(join(dir, 'Hemden', 'zero.jpg'), new Uint8Array(0));
    put(join(dir, 'Hemden', 'fake.jpg'), 'this is text, not a JPEG\n');
    put(join(dir, 'Hemden', 'notes.txt'), 'remember to label the shirts\n');
    put(join(dir, 'Hemden', 'scan.bmp'), 'BM');
    put(join(dir, 'Hemden', '.DS_Store'), 'junk');
    put(join(dir, 'Hemden', 'Thumbs.db'), 'junk');
    put(join(dir, 'Hemden', '._good.jpg'), 'AppleDouble');
    put(join(dir, '__MACOSX', 'Hemden', '._good.jpg'), 'AppleDouble');
    put(join(dir, '.git', 'HEAD'), 'ref: refs/heads/main\n');
    put(join(dir, 'stray.png'), await solid(2, 2, { r: 0, g: 0, b: 0 }));
    symlinkSync(join(dir, 'nowhere.png'), join(dir, 'Hemden', 'dangling.png'));
    put(join(dir, 'Leer', '.keep'), '');

    const scan = await scanDataset(dir, { valFraction: 0 });
    assert.equal(scan.layout, 'imagefolder');
    assert.deepEqual(scan.classes, ['Hemden', 'Leer', 'Mäntel']);
    assert.deepEqual(
      scan.skipped.map((s) => [s.path, s.code]),
      [
        ['Hemden/corrupt.jpg', 'decode-error'],
        ['Hemden/dangling.png', 'unreadable'],
        ['Hemden/fake.jpg', 'decode-error'],
        ['Hemden/notes.txt', 'not-an-image'],
        ['Hemden/scan.bmp', 'unsupported-format'],
        ['Hemden/zero.jpg', 'empty-file'],
        ['stray.png', 'misplaced'],
      ],
    );
    const reason = (p: string) => scan.skipped.find((s) => s.path === p)?.reason ?? '';
    assert.equal(reason('Hemden/notes.txt'), 'not an image');
    assert.match(reason('Hemden/fake.jpg'), /^decode error: .*unsupported image format/);
    assert.match(reason('Hemden/corrupt.jpg'), /^decode error: /);
    assert.equal(reason('Hemden/zero.jpg'), 'empty file (0 bytes)');
    assert.equal(reason('stray.png'), 'outside any class folder');
    // the truncated PNG has a good header: a plain scan keeps it, and loading finds it out
    assert.deepEqual(files(scan, 'train'), [
      { path: 'Hemden/good.jpg', label: 0 },
      { path: 'Hemden/trunc.png', label: 0 },
      { path: 'Mäntel/bild_①.png', label: 2 },
      { path: 'Mäntel/sub/tief.webp', label: 2 },
    ]);
    assert.deepEqual(
      scan.warnings.map((w) => [w.code, w.class]),
      [['empty-class', 'Leer']],
    );
    assertJsonSafe(scan);
    const text = formatScan(scan);
    assert.match(text, /Mäntel\s+2\s+2/);
    assert.match(text, /Hemden\/notes\.txt\s+not an image/);
    assert.match(text, /class folder Leer\/ has no usable images/);
    assert.doesNotMatch(text, /DS_Store|Thumbs|MACOSX|\.git/);

    const cacheDir = tempDir('messy-cache');
    const loaded = await loadSplit(scan, 'train', { side: 6, cacheDir });
    assert.deepEqual(loaded.files, ['Hemden/good.jpg', 'Mäntel/bild_①.png', 'Mäntel/sub/tief.webp']);
    assert.deepEqual([...loaded.labels], [0, 2, 2]);
    assert.equal(loaded.images.length, 3 * 6 * 6 * 3);
    assert.deepEqual(
      loaded.skipped.map((s) => [s.path, s.code]),
      [['Hemden/trunc.png', 'decode-error']],
    );
    // the failure is cached too: the next load decodes nothing and reports it again
    const again = await loadSplit(scan, 'train', { side: 6, cacheDir });
    assert.deepEqual(again.stats, { decoded: 0, cached: 4 });
    assert.deepEqual(again.skipped, loaded.skipped);
    assert.deepEqual(again.images, loaded.images);

    // validate: true finds the truncated file during the scan
    const checked = await scanDataset(dir, { valFraction: 0, validate: true });
    assert.equal(checked.validated, true);
    assert.deepEqual(checked.skipped.find((s) => s.path === 'Hemden/trunc.png')?.code, 'decode-error');
    assert.equal(split(checked, 'train').count, 3);
  });
});

describe('decoding and the cache', () => {
  test('grey, RGBA, GIF and WebP inputs become RGB at the cache side', async () => {
    const dir = tempDir('decode');
    put(join(dir, 'a-grey.png'), await greyPng(20, 10, 100));
    put(join(dir, 'b-rgba.png'), await solid(10, 10, { r: 255, g: 0, b: 0, alpha: 0.5 }));
    put(
      join(dir, 'c-anim.gif'),
      await gifFrames(12, 12, [
        { r: 255, g: 0, b: 0 },
        { r: 0, g: 0, b: 255 },
      ]),
    );
    put(join(dir, 'd.webp'), await solid(30, 40, { r: 0, g: 0, b: 255 }, 'webp'));
    // 20x10 stored, EXIF orientation 6 (rotate 90): 10x20 as shown
    const rotated = await sharp({ create: { width: 20, height: 10, channels: 3, background: '#ffffff' } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    put(join(dir, 'e-rotated.jpg'), rotated);
    const scan = await scanDataset(dir, { valFraction: 0 });
    assert.deepEqual(scan.sizes.channels, { '1': 1, '3': 2, '4': 2 });
    assert.deepEqual(scan.sizes.formats, { png: 2, gif: 1, webp: 1, jpeg: 1 });
    assert.equal(scan.sizes.minWidth, 10);
    assert.equal(scan.sizes.maxHeight, 40);

    const side = 16;
    const loaded = await loadSplit(scan, 'train', { side, cacheDir: tempDir('decode-cache') });
    assert.equal(loaded.images.length, 5 * side * side * 3);
    const near = (got: number[], want: number[], tol: number) =>
      assert.ok(
        got.every((v, i) => Math.abs(v - (want[i] as number)) <= tol),
        `got ${got.map((v) => v.toFixed(1))}, wanted ${want} +-${tol}`,
      );
    near(meanRgb(loaded.images, side, 0), [100, 100, 100], 1); // grey -> R = G = B
    near(meanRgb(loaded.images, side, 1), [128, 0, 0], 2); // 50% red over black
    near(meanRgb(loaded.images, side, 2), [255, 0, 0], 2); // the first frame only
    near(meanRgb(loaded.images, side, 3), [0, 0, 255], 6); // lossy WebP
    near(meanRgb(loaded.images, side, 4), [255, 255, 255], 2);
  });

  test('a second load decodes nothing; a changed file is decoded again', async () => {
    const dir = tempDir('cache');
    const colours = [
      { r: 200, g: 0, b: 0 },
      { r: 0, g: 200, b: 0 },
      { r: 0, g: 0, b: 200 },
    ];
    for (const [i, c] of colours.entries()) put(join(dir, `${i}.png`), await solid(8, 8, c));
    const scan = JSON.parse(JSON.stringify(await scanDataset(dir, { valFraction: 0 }))) as DatasetScan;
    const cacheDir = tempDir('cache-dir');
    const side = 5;
    const progress: [number, number][] = [];
    const first = await loadSplit(scan, 'train', {
      side,
      cacheDir,
      onProgress: (d, t) => progress.push([d, t]),
    });
    assert.deepEqual(first.stats, { decoded: 3, cached: 0 });
    assert.deepEqual(progress[0], [0, 3]);
    assert.deepEqual(progress.at(-1), [3, 3]);

    const entries = (readdirSync(cacheDir, { recursive: true, encoding: 'utf8' }) as string[])
      .filter((f) => f.endsWith('.bin'))
      .map((f) => join(cacheDir, f));
    assert.equal(entries.length, 3);
    assert.ok(entries.every((f) => statSync(f).size === 24 + side * side * 3));
    const mtimes = entries.map((f) => statSync(f).mtimeMs);

    const second = await loadSplit(scan, 'train', { side, cacheDir });
    assert.deepEqual(second.stats, { decoded: 0, cached: 3 });
    assert.deepEqual(second.images, first.images);
    assert.deepEqual(
      entries.map((f) => statSync(f).mtimeMs),
      mtimes,
    );

    // rewrite 1.png with other pixels and a new mtime
    put(join(dir, '1.png'), await solid(8, 8, { r: 255, g: 255, b: 0 }));
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(dir, '1.png'), later, later);
    const third = await loadSplit(scan, 'train', { side, cacheDir });
    assert.deepEqual(third.stats, { decoded: 1, cached: 2 });
    const per = side * side * 3;
    assert.deepEqual(third.images.subarray(0, per), first.images.subarray(0, per));
    assert.notDeepEqual(third.images.subarray(per, 2 * per), first.images.subarray(per, 2 * per));
    assert.deepEqual(meanRgb(third.images, side, 1).map(Math.round), [255, 255, 0]);

    // a damaged cache entry is a miss, not an error
    for (const f of entries) truncateSync(f, 10);
    const fourth = await loadSplit(scan, 'train', { side, cacheDir });
    assert.deepEqual(fourth.stats, { decoded: 2, cached: 1 });
    assert.deepEqual(fourth.images, third.images);

    // another side is another cache entry; two loads filling it at once agree and leave no temp files
    const [x, y] = await Promise.all([
      loadSplit(scan, 'train', { side: 7, cacheDir }),
      loadSplit(scan, 'train', { side: 7, cacheDir }),
    ]);
    assert.equal(x.stats.decoded + x.stats.cached, 3);
    assert.deepEqual(x.images, y.images);
    const after7 = await loadSplit(scan, 'train', { side: 7, cacheDir });
    assert.deepEqual(after7.stats, { decoded: 0, cached: 3 });
    assert.deepEqual(after7.images, x.images);
    const leftovers = (readdirSync(cacheDir, { recursive: true, encoding: 'utf8' }) as string[]).filter((f) =>
      f.endsWith('.tmp'),
    );
    assert.deepEqual(leftovers, []);
  });

  test('an unusable cache folder still loads, with a warning', async () => {
    const dir = tempDir('nocache');
    put(join(dir, 'x.png'), await solid(4, 4, { r: 9, g: 9, b: 9 }));
    const scan = await scanDataset(dir, { valFraction: 0 });
    // (with the default fraction, one image leaves the carved val split empty)
    assert.deepEqual(
      (await scanDataset(dir)).warnings.map((w) => [w.code, w.split]),
      [['empty-split', 'val']],
    );
    const notADir = join(dir, 'file-not-folder');
    writeFileSync(notADir, '');
    const loaded = await loadSplit(scan, 'train', { side: 4, cacheDir: notADir });
    assert.equal(loaded.count, 1);
    assert.equal(loaded.warnings.length, 1);
    assert.match(loaded.warnings[0] ?? '', /not writable/);
  });

  test('cacheSideFor leaves room for random crops', () => {
    assert.equal(cacheSideFor(224), 256);
    assert.equal(cacheSideFor(28), 32);
    assert.equal(cacheSideFor(50), 57);
  });
});

describe('special files and symbolic links', () => {
  const red = { r: 255, g: 0, b: 0 };
  const blue = { r: 0, g: 0, b: 255 };
  const outsideMsg = (target: string, kind = '') =>
    `symbolic link to ${realpathSync(target)}${kind}, outside the dataset folder: not followed`;

  test('FIFOs, sockets and devices named like images are skipped unopened; links followed only inside', async () => {
    const dir = tempDir('special');
    const outside = tempDir('special-outside');
    put(join(dir, 'cat', 'good.png'), await solid(4, 4, red));
    put(join(dir, 'dog', 'd.png'), await solid(4, 4, blue));
    put(join(outside, 'secret.png'), await solid(4, 4, red));
    put(join(outside, 'cls', 'x.png'), await solid(4, 4, red));
    const pipe = join(dir, 'cat', 'pipe.png');
    mkfifo(pipe);
    const server = await unixSocket(join(dir, 'cat', 'sock.jpg'));
    symlinkSync(pipe, join(dir, 'cat', 'pipe-link.png')); // a link inside the dataset, to a FIFO
    symlinkSync('/dev/zero', join(dir, 'cat', 'zero.png'));
    symlinkSync('/dev/urandom', join(dir, 'dog', 'random.webp'));
    symlinkSync(join(outside, 'secret.png'), join(dir, 'dog', 'secret.png'));
    symlinkSync(join(dir, 'dog', 'd.png'), join(dir, 'cat', 'alias.png')); // inside: followed
    symlinkSync(join(outside, 'cls'), join(dir, 'linked')); // a class folder out of the dataset
    try {
      let scan: DatasetScan | undefined;
      for (const validate of [false, true]) {
        scan = await failIfHangs(scanDataset(dir, { valFraction: 0, validate }), [pipe], 'the scan');
        assert.deepEqual(scan.classes, ['cat', 'dog']);
        assert.deepEqual(
          scan.skipped.map((s) => [s.path, s.code, s.reason]),
          [
            ['cat/pipe-link.png', 'special-file', 'not a regular file (FIFO)'],
            ['cat/pipe.png', 'special-file', 'not a regular file (FIFO)'],
            ['cat/sock.jpg', 'special-file', 'not a regular file (socket)'],
            ['cat/zero.png', 'outside-dataset', outsideMsg('/dev/zero', ' (character device)')],
            ['dog/random.webp', 'outside-dataset', outsideMsg('/dev/urandom', ' (character device)')],
            ['dog/secret.png', 'outside-dataset', outsideMsg(join(outside, 'secret.png'))],
            ['linked', 'outside-dataset', outsideMsg(join(outside, 'cls'))],
          ],
        );
        assert.deepEqual(files(scan, 'train'), [
          { path: 'cat/alias.png', label: 0 },
          { path: 'cat/good.png', label: 0 },
          { path: 'dog/d.png', label: 1 },
        ]);
      }
      const text = formatScan(scan as DatasetScan);
      assert.match(text, /cat\/pipe\.png\s+not a regular file \(FIFO\)/);
      const loaded = await failIfHangs(
        loadSplit(scan as DatasetScan, 'train', { side: 4, cacheDir: tempDir('special-cache') }),
        [pipe],
        'the load',
      );
      assert.deepEqual(loaded.files, ['cat/alias.png', 'cat/good.png', 'dog/d.png']);
      assert.deepEqual(loaded.skipped, []);
    } finally {
      server.close();
    }
  });

  test('a file that became a FIFO or a link out of the dataset after the scan is not read by the load', async () => {
    const dir = tempDir('special-later');
    const outside = tempDir('special-later-outside');
    for (const n of ['a', 'b', 'c']) put(join(dir, `${n}.png`), await solid(4, 4, red));
    put(join(outside, 'other.png'), await solid(4, 4, blue));
    const scan = await scanDataset(dir, { valFraction: 0 });
    assert.equal(split(scan, 'train').count, 3);
    const pipe = join(dir, 'a.png');
    rmSync(pipe);
    mkfifo(pipe);
    rmSync(join(dir, 'b.png'));
    symlinkSync(join(outside, 'other.png'), join(dir, 'b.png'));
    const loaded = await failIfHangs(
      loadSplit(scan, 'train', { side: 4, cacheDir: tempDir('special-later-cache') }),
      [pipe],
      'the load',
    );
    assert.deepEqual(loaded.files, ['c.png']);
    assert.deepEqual(
      loaded.skipped.map((s) => [s.path, s.code, s.reason]),
      [
        ['a.png', 'special-file', 'not a regular file (FIFO)'],
        ['b.png', 'outside-dataset', outsideMsg(join(outside, 'other.png'))],
      ],
    );
  });

  test('a FIFO where a cache entry belongs is a miss, and the entry is written over it', async () => {
    const dir = tempDir('special-cache-entry');
    put(join(dir, 'x.png'), await solid(4, 4, red));
    const scan = await scanDataset(dir, { valFraction: 0 });
    const abs = join(scan.root, 'x.png');
    const st = statSync(abs, { bigint: true });
    const cacheDir = tempDir('special-cache-dir');
    const entry = entryPath(cacheDir, 4, { abs, size: st.size, mtimeNs: st.mtimeNs }, 'image');
    mkdirSync(dirname(entry), { recursive: true });
    mkfifo(entry);
    const loaded = await failIfHangs(loadSplit(scan, 'train', { side: 4, cacheDir }), [entry], 'the load');
    assert.deepEqual(loaded.stats, { decoded: 1, cached: 0 });
    assert.deepEqual(loaded.files, ['x.png']);
    assert.ok(statSync(entry).isFile(), 'the entry replaced the FIFO');
    const again = await loadSplit(scan, 'train', { side: 4, cacheDir });
    assert.deepEqual(again.stats, { decoded: 0, cached: 1 });
  });

  test('IDX files and classes.txt that are FIFOs or links to devices are skipped, never read', async () => {
    const imgs = new Uint8Array(6 * 4 * 4).fill(7);
    const labels = new Uint8Array([0, 1, 2, 0, 1, 2]);
    // classes.txt a FIFO: the pair loads, the names are numbers, and the scan says why
    const dir = tempDir('idx-fifo-classes');
    put(join(dir, 'train-images-idx3-ubyte.gz'), await encodeIdx([6, 4, 4], imgs, true));
    put(join(dir, 'train-labels-idx1-ubyte.gz'), await encodeIdx([6], labels, true));
    const classes = join(dir, 'classes.txt');
    mkfifo(classes);
    for (const validate of [false, true]) {
      const scan = await failIfHangs(
        scanDataset(dir, { valFraction: 0, validate }),
        [classes],
        'the IDX scan',
      );
      assert.deepEqual(scan.classes, ['0', '1', '2']);
      assert.equal(scan.images, 6);
      assert.deepEqual(
        scan.skipped.map((s) => [s.path, s.code, s.reason]),
        [['classes.txt', 'special-file', 'not a regular file (FIFO): class names are numbers']],
      );
    }

    // a labels file that is a FIFO, an images file and classes.txt that link to devices
    const bad = tempDir('idx-special');
    put(join(bad, 'train-images-idx3-ubyte.gz'), await encodeIdx([6, 4, 4], imgs, true));
    const trainLabels = join(bad, 'train-labels-idx1-ubyte');
    mkfifo(trainLabels);
    symlinkSync('/dev/zero', join(bad, 't10k-images-idx3-ubyte'));
    put(join(bad, 't10k-labels-idx1-ubyte.gz'), await encodeIdx([6], labels, true));
    symlinkSync('/dev/urandom', join(bad, 'classes.txt'));
    for (const validate of [false, true]) {
      const scan = await failIfHangs(
        scanDataset(bad, { valFraction: 0, validate }),
        [trainLabels],
        'the IDX scan',
      );
      assert.deepEqual(scan.splits, []);
      assert.deepEqual(
        scan.skipped.map((s) => [s.path, s.code, s.reason]),
        [
          ['classes.txt', 'outside-dataset', outsideMsg('/dev/urandom', ' (character device)')],
          // skipped where the folder is listed, so its labels file has no partner (and is left alone, as before)
          ['t10k-images-idx3-ubyte', 'outside-dataset', outsideMsg('/dev/zero', ' (character device)')],
          [
            'train-images-idx3-ubyte.gz',
            'bad-idx',
            'its labels file train-labels-idx1-ubyte is unusable: not a regular file (FIFO)',
          ],
          ['train-labels-idx1-ubyte', 'special-file', 'not a regular file (FIFO)'],
        ],
      );
    }
  });
});
