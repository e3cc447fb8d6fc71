// Pure: the cluster grid of one sample of a patch-order frame, read from the order and errors the engine returned
// (nothing is recomputed). Sequence position i holds cluster order[i]; the generative decoder at position i
// predicts cluster order[i+1], so clusterError[i] belongs to cluster order[i+1] and order[0] has no error.

export interface FrameLike {
  readonly clustersPerSide: number;
  readonly k: number;
  readonly order: readonly (readonly number[])[];
  readonly clusterError: readonly (readonly number[])[];
}

export interface ClusterCell {
  readonly cluster: number;
  readonly row: number;
  readonly col: number;
  /** Its place in the order: the i where order[i] == cluster. */
  readonly position: number;
  /** 2 - 2cos of its prediction, null for the first cluster (never predicted). */
  readonly error: number | null;
  /** Seen (position <= cursor), the one predicted next (position == cursor + 1), or not yet. */
  readonly state: 'seen' | 'next' | 'future';
}

/** Cells in raster order (cluster c at row floor(c / side), column c % side) for a sample at sequence `cursor`. */
export function clusterCells(frame: FrameLike, sample: number, cursor: number): ClusterCell[] {
  const order = frame.order[sample] ?? [];
  const errors = frame.clusterError[sample] ?? [];
  const side = frame.clustersPerSide;
  const position = new Map<number, number>();
  order.forEach((c, i) => position.set(c, i));
  const cells: ClusterCell[] = [];
  for (let c = 0; c < frame.k; c++) {
    const pos = position.get(c) ?? -1;
    const err = pos >= 1 ? (errors[pos - 1] ?? null) : null;
    cells.push({
      cluster: c,
      row: Math.floor(c / side),
      col: c % side,
      position: pos,
      error: err,
      state: pos >= 0 && pos <= cursor ? 'seen' : pos === cursor + 1 ? 'next' : 'future',
    });
  }
  return cells;
}

/** Min and max error over the frame (all samples), so heat colours compare across samples. */
export function errorRange(frame: FrameLike): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (const row of frame.clusterError)
    for (const v of row)
      if (Number.isFinite(v)) {
        if (v < min) min = v;
        if (v > max) max = v;
      }
  return min <= max ? { min, max } : { min: 0, max: 0 };
}

/** A heat colour for an error: a red tint, faint for the frame's lowest error and strong for its highest. */
export function heatColor(error: number | null, range: { min: number; max: number }, maxAlpha = 0.7): string {
  if (error === null || !Number.isFinite(error)) return 'transparent';
  const t = range.max > range.min ? (error - range.min) / (range.max - range.min) : 0.5;
  const u = Math.min(1, Math.max(0, t));
  return `rgba(230, 55, 40, ${(0.08 + (maxAlpha - 0.08) * u).toFixed(3)})`;
}

/** The last sequence cursor the view can step to: K - 2 (position K-1 predicts nothing). */
export function maxCursor(k: number): number {
  return Math.max(0, k - 2);
}
