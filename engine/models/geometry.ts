// Pure index arithmetic of D-iGPT: sin-cos position tables, cluster layouts, the block-causal mask, bilinear maps.

/** MAE's get_2d_sincos_pos_embed: [(cls ? 1 : 0) + grid*grid, dim], w coordinate first, cls row zeros. */
export function sincos2d(dim: number, grid: number, cls: boolean): Float32Array {
  if (dim % 4 !== 0) throw new Error(`sin-cos position embedding needs a width divisible by 4, got ${dim}`);
  const rows = (cls ? 1 : 0) + grid * grid;
  const out = new Float32Array(rows * dim);
  const quarter = dim / 4;
  const omega = new Float32Array(quarter);
  for (let i = 0; i < quarter; i++) omega[i] = 1 / 10000 ** (i / quarter);
  for (let h = 0; h < grid; h++) {
    for (let w = 0; w < grid; w++) {
      const row = (cls ? 1 : 0) + h * grid + w;
      const base = row * dim;
      for (let i = 0; i < quarter; i++) {
        const om = omega[i] as number;
        out[base + i] = Math.sin(Math.fround(w * om));
        out[base + quarter + i] = Math.cos(Math.fround(w * om));
        out[base + 2 * quarter + i] = Math.sin(Math.fround(h * om));
        out[base + 3 * quarter + i] = Math.cos(Math.fround(h * om));
      }
    }
  }
  return out;
}

/**
 * Raster index (in a grid of `grid` x `grid` tokens) of token t of cluster k, with `clustersPerSide`^2 clusters of
 * side `grid / clustersPerSide`; clusters and their tokens are both numbered in raster order.
 */
export function clusterTokenIndex(grid: number, clustersPerSide: number, k: number, t: number): number {
  const side = grid / clustersPerSide;
  const kr = Math.floor(k / clustersPerSide);
  const kc = k % clustersPerSide;
  const tr = Math.floor(t / side);
  const tc = t % side;
  return (kr * side + tr) * grid + kc * side + tc;
}

/** For each cluster (raster order), the raster indices of its tokens: [K][T]. */
export function clusterTable(grid: number, clustersPerSide: number): Int32Array[] {
  const side = grid / clustersPerSide;
  const k = clustersPerSide * clustersPerSide;
  const out: Int32Array[] = [];
  for (let c = 0; c < k; c++) {
    const row = new Int32Array(side * side);
    for (let t = 0; t < side * side; t++) row[t] = clusterTokenIndex(grid, clustersPerSide, c, t);
    out.push(row);
  }
  return out;
}

/**
 * The block-causal mask of D-iGPT, (N+1) x (N+1) with N = visible * tokensPerCluster, as 0 / -Infinity: a token sees
 * its own and earlier clusters; cls (last row/column) belongs to the last visible cluster: it sees everything and
 * only the last visible cluster sees it.
 */
export function clusterMask(visible: number, tokensPerCluster: number): Float32Array {
  const n = visible * tokensPerCluster;
  const size = n + 1;
  const cid = (i: number): number => (i === n ? visible - 1 : Math.floor(i / tokensPerCluster));
  const m = new Float32Array(size * size);
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) {
      let allowed = cid(j) <= cid(i);
      if (j === n && i < n) allowed = cid(i) === visible - 1;
      if (i === n) allowed = true;
      m[i * size + j] = allowed ? 0 : -Infinity;
    }
  }
  return m;
}

/** 1-D weights [out, in] of PyTorch's bilinear interpolation with align_corners=False (half-pixel centres). */
export function bilinearWeights1d(inSize: number, outSize: number): Float32Array {
  const w = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    let src = scale * (o + 0.5) - 0.5;
    if (src < 0) src = 0;
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    const l1 = src - i0;
    w[o * inSize + i0] = (w[o * inSize + i0] as number) + (1 - l1);
    w[o * inSize + i1] = (w[o * inSize + i1] as number) + l1;
  }
  return w;
}

/** The 2-D resize of an s x s map to t x t as one matrix [t*t, s*s] = kron(Wy, Wx). */
export function bilinearMatrix(s: number, t: number): Float32Array {
  const w = bilinearWeights1d(s, t);
  const out = new Float32Array(t * t * s * s);
  for (let oy = 0; oy < t; oy++)
    for (let ox = 0; ox < t; ox++)
      for (let iy = 0; iy < s; iy++)
        for (let ix = 0; ix < s; ix++)
          out[(oy * t + ox) * s * s + iy * s + ix] = (w[oy * s + iy] as number) * (w[ox * s + ix] as number);
  return out;
}

/** Inverse of a permutation. */
export function invertPermutation(p: Int32Array): Int32Array {
  const inv = new Int32Array(p.length);
  for (let i = 0; i < p.length; i++) inv[p[i] as number] = i;
  return inv;
}
