// Student/teacher views of one image: RandomResizedCrop (scale 0.2-1, ratio 3/4-4/3, bicubic) and a horizontal flip.
import type { Rng } from '../../engine/rng.js';

/** A crop box in source pixels and whether it is mirrored; drawn once and applied to both views. */
export interface CropBox {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
  readonly flip: boolean;
}

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** torchvision's RandomResizedCrop.get_params (10 tries, then a central crop), plus a coin for the flip. */
export function drawCrop(
  rng: Rng,
  side: number,
  scale: readonly [number, number] = [0.2, 1],
  flip = true,
): CropBox {
  const area = side * side;
  const logR = [Math.log(3 / 4), Math.log(4 / 3)] as const;
  for (let i = 0; i < 10; i++) {
    const target = area * (scale[0] + rng.uniform() * (scale[1] - scale[0]));
    const ratio = Math.exp(logR[0] + rng.uniform() * (logR[1] - logR[0]));
    const w = Math.round(Math.sqrt(target * ratio));
    const h = Math.round(Math.sqrt(target / ratio));
    if (w > 0 && h > 0 && w <= side && h <= side) {
      const y = rng.int(side - h + 1);
      const x = rng.int(side - w + 1);
      return { x, y, w, h, flip: flip && rng.uniform() < 0.5 };
    }
  }
  return { x: 0, y: 0, w: side, h: side, flip: flip && rng.uniform() < 0.5 };
}

/** The whole image, unflipped (evaluation). */
export function fullCrop(side: number): CropBox {
  return { x: 0, y: 0, w: side, h: side, flip: false };
}

function cubic(t: number): number {
  // Keys' kernel with a = -0.5 (PIL's bicubic)
  const a = -0.5;
  const x = Math.abs(t);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

/** 1-D bicubic taps for `out` samples of the span [start, start+len) of a `size`-pixel axis (edges clamped). */
function taps(start: number, len: number, out: number, size: number): { idx: Int32Array; w: Float32Array } {
  const idx = new Int32Array(out * 4);
  const w = new Float32Array(out * 4);
  const scale = len / out;
  for (let o = 0; o < out; o++) {
    const src = start + (o + 0.5) * scale - 0.5;
    const base = Math.floor(src);
    let sum = 0;
    for (let k = 0; k < 4; k++) {
      const p = base - 1 + k;
      const wk = cubic(src - p);
      idx[o * 4 + k] = Math.min(size - 1, Math.max(0, p));
      w[o * 4 + k] = wk;
      sum += wk;
    }
    for (let k = 0; k < 4; k++) w[o * 4 + k] = (w[o * 4 + k] as number) / sum;
  }
  return { idx, w };
}

/**
 * Crops `box` from an RGB uint8 image (side x side, HWC), resizes it to out x out with bicubic interpolation, flips
 * it if asked and normalises each channel: (v/255 - mean) / std. Writes HWC floats into `dst` at `offset`.
 */
export function cropResizeNormalize(
  src: Uint8Array,
  side: number,
  box: CropBox,
  out: number,
  mean: readonly number[],
  std: readonly number[],
  dst: Float32Array,
  offset: number,
): void {
  const tx = taps(box.x, box.w, out, side);
  const ty = taps(box.y, box.h, out, side);
  const row = new Float32Array(side * 3);
  const tmp = new Float32Array(out * side * 3);
  // vertical pass: out rows x side columns
  for (let oy = 0; oy < out; oy++) {
    row.fill(0);
    for (let k = 0; k < 4; k++) {
      const sy = ty.idx[oy * 4 + k] as number;
      const wk = ty.w[oy * 4 + k] as number;
      const base = sy * side * 3;
      for (let i = 0; i < side * 3; i++) row[i] = (row[i] as number) + wk * (src[base + i] as number);
    }
    tmp.set(row, oy * side * 3);
  }
  // horizontal pass, flip and normalise
  for (let oy = 0; oy < out; oy++) {
    for (let ox = 0; ox < out; ox++) {
      const dx = box.flip ? out - 1 - ox : ox;
      for (let c = 0; c < 3; c++) {
        let v = 0;
        for (let k = 0; k < 4; k++)
          v +=
            (tx.w[ox * 4 + k] as number) *
            (tmp[(oy * side + (tx.idx[ox * 4 + k] as number)) * 3 + c] as number);
        const clamped = Math.min(255, Math.max(0, v));
        dst[offset + (oy * out + dx) * 3 + c] = (clamped / 255 - (mean[c] as number)) / (std[c] as number);
      }
    }
  }
}
