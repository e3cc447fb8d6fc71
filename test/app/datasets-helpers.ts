// Helpers of the dataset tests: temp folders and small real images made with sharp.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';

export interface Rgb {
  r: number;
  g: number;
  b: number;
}

/** A fresh folder under os.tmpdir(); `cleanup()` removes them all. */
const made: string[] = [];
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `digpt-${label}-`));
  made.push(dir);
  return dir;
}
export function cleanup(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Writes bytes, creating parent folders. */
export function put(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
}

/** A solid-colour image of `w` x `h` in a format. */
export async function solid(
  w: number,
  h: number,
  colour: Rgb & { alpha?: number },
  format: 'png' | 'jpeg' | 'webp' | 'gif' = 'png',
): Promise<Buffer> {
  const channels = colour.alpha === undefined ? 3 : 4;
  const img = sharp({ create: { width: w, height: h, channels, background: colour } });
  return img.toFormat(format).toBuffer();
}

/** A one-channel (grey) PNG of a single value. */
export async function greyPng(w: number, h: number, value: number): Promise<Buffer> {
  return sharp(Buffer.alloc(w * h, value), { raw: { width: w, height: h, channels: 1 } })
    .toColourspace('b-w')
    .png()
    .toBuffer();
}

/** A noisy PNG (incompressible, so that half of it cuts into the pixel data). */
export async function noisyPng(w: number, h: number): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3);
  let x = 12345;
  for (let i = 0; i < px.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    px[i] = x >>> 24;
  }
  return sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
}

/** An animated GIF whose frames are solid colours. */
export async function gifFrames(w: number, h: number, colours: Rgb[]): Promise<Buffer> {
  const frames = colours.map((c) => {
    const f = Buffer.alloc(w * h * 3);
    for (let i = 0; i < w * h; i++) f.set([c.r, c.g, c.b], i * 3);
    return f;
  });
  return sharp(Buffer.concat(frames), {
    raw: { width: w, height: h * colours.length, channels: 3, pageHeight: h },
  })
    .gif()
    .toBuffer();
}

/** The mean of each channel of image `i` in an [N, side, side, 3] array. */
export function meanRgb(images: Uint8Array, side: number, i: number): [number, number, number] {
  const per = side * side * 3;
  const sum = [0, 0, 0];
  for (let p = 0; p < side * side; p++) {
    for (let c = 0; c < 3; c++) sum[c] = (sum[c] as number) + (images[i * per + p * 3 + c] as number);
  }
  return sum.map((s) => s / (side * side)) as [number, number, number];
}
