// Pure: the exponential moving average of a series, debiased as TensorBoard does (the first points are not pulled
// toward 0). Missing values (null, NaN) stay missing and do not move the average.

/** EMA with weight `alpha` in [0, 1): 0 returns the series, 0.99 is very smooth. */
export function ema(ys: readonly (number | null)[], alpha: number): (number | null)[] {
  const a = Math.min(Math.max(alpha, 0), 0.9999);
  const out: (number | null)[] = new Array(ys.length);
  let acc = 0;
  let weight = 0;
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i];
    if (y === null || y === undefined || !Number.isFinite(y)) {
      out[i] = null;
      continue;
    }
    acc = a * acc + (1 - a) * y;
    weight = a * weight + (1 - a);
    out[i] = acc / weight;
  }
  return out;
}
