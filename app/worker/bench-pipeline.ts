// Times the data pipeline from a folder of JPEGs: scan, first load (decode + resize + cache), cached load, augmentation.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import sharp from 'sharp';
import { Rng } from '../../engine/rng.js';
import { cropResizeNormalize, drawCrop, IMAGENET_MEAN, IMAGENET_STD } from './augment.js';
import { cacheSideFor, loadSplit, scanDataset } from '../datasets/index.js';

export interface PipelineBenchResult {
  readonly images: number;
  readonly scan_img_per_s: number;
  readonly first_load_img_per_s: number;
  readonly cached_load_img_per_s: number;
  readonly augment_img_per_s: number;
  readonly resolution: number;
}

/** A folder of `n` JPEGs in 10 classes, of mixed sizes (64-256 px), with some texture so JPEG has work to do. */
export async function makeJpegFolder(dir: string, n: number): Promise<void> {
  const rng = new Rng(7);
  for (let i = 0; i < n; i++) {
    const cls = nodePath.join(dir, `class${i % 10}`);
    fs.mkdirSync(cls, { recursive: true });
    const w = 64 + rng.int(193);
    const h = 64 + rng.int(193);
    const px = Buffer.alloc(w * h * 3);
    for (let j = 0; j < px.length; j++) px[j] = (j * (i + 3) + rng.int(40)) & 255;
    await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 85 })
      .toFile(nodePath.join(cls, `${i}.jpg`));
  }
}

/**
 * Runs the pipeline over `dir` (made with makeJpegFolder when not given) at a training resolution: the student and
 * teacher views of every image, as a pretraining step builds them.
 */
export async function benchPipeline(
  dir: string | undefined,
  n = 1000,
  resolution = 32,
): Promise<PipelineBenchResult> {
  const work = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-pipeline-'));
  try {
    const data = dir ?? nodePath.join(work, 'jpegs');
    if (!dir) await makeJpegFolder(data, n);
    const cacheDir = nodePath.join(work, 'cache');
    let t0 = performance.now();
    const scan = await scanDataset(data, { valFraction: 0 });
    const scanMs = performance.now() - t0;
    const side = cacheSideFor(resolution);
    t0 = performance.now();
    const first = await loadSplit(scan, 'train', { side, cacheDir });
    const firstMs = performance.now() - t0;
    t0 = performance.now();
    const again = await loadSplit(scan, 'train', { side, cacheDir });
    const cachedMs = performance.now() - t0;
    const rng = new Rng(1);
    const view = new Float32Array(resolution * resolution * 3);
    const per = side * side * 3;
    t0 = performance.now();
    for (let i = 0; i < again.count; i++) {
      const img = again.images.subarray(i * per, (i + 1) * per);
      const box = drawCrop(rng, side);
      cropResizeNormalize(img, side, box, resolution, IMAGENET_MEAN, IMAGENET_STD, view, 0);
      cropResizeNormalize(img, side, box, resolution, IMAGENET_MEAN, IMAGENET_STD, view, 0);
    }
    const augMs = performance.now() - t0;
    const count = first.count;
    const rate = (ms: number): number => Math.round((count / (ms / 1000)) * 10) / 10;
    return {
      images: count,
      scan_img_per_s: rate(scanMs),
      first_load_img_per_s: rate(firstMs),
      cached_load_img_per_s: rate(cachedMs),
      augment_img_per_s: rate(augMs),
      resolution,
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
