// Pure: min/max-per-bucket downsampling of series that share one x, so a canvas chart draws 100,000 points as a
// few thousand without losing spikes. Each bucket keeps two x slots (its first and last step); every series puts
// its bucket minimum and maximum there in the order they occurred, which is what a pixel column would show.

export interface Table {
  x: number[];
  ys: (number | null)[][];
}

/** At most 2 * buckets points; tables already that small are returned as they are. */
export function downsampleMinMax(table: Table, buckets: number): Table {
  const n = table.x.length;
  const b = Math.max(1, Math.floor(buckets));
  if (n <= 2 * b) return table;
  const x: number[] = [];
  const ys: (number | null)[][] = table.ys.map(() => []);
  for (let k = 0; k < b; k++) {
    const start = Math.floor((k * n) / b);
    const end = Math.floor(((k + 1) * n) / b);
    if (end <= start) continue;
    const single = end - start === 1;
    x.push(table.x[start]!);
    if (!single) x.push(table.x[end - 1]!);
    for (let s = 0; s < table.ys.length; s++) {
      const col = table.ys[s]!;
      let min = Infinity;
      let max = -Infinity;
      let iMin = -1;
      let iMax = -1;
      for (let i = start; i < end; i++) {
        const v = col[i];
        if (v === null || v === undefined || !Number.isFinite(v)) continue;
        if (v < min) {
          min = v;
          iMin = i;
        }
        if (v > max) {
          max = v;
          iMax = i;
        }
      }
      const out = ys[s]!;
      if (iMin < 0) {
        out.push(null);
        if (!single) out.push(null);
      } else if (single) out.push(min);
      else if (iMin <= iMax) out.push(min, max);
      else out.push(max, min);
    }
  }
  return { x, ys };
}
