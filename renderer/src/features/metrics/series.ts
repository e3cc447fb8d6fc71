// Pure: metric series extracted from metrics.jsonl records, one (step, value) column pair per key. A record whose
// step is not past a key's last step (a run resumed from an earlier checkpoint) drops that key's later points first.

/** The records as the contract carries them (a line of metrics.jsonl). */
export type MetricRecordLike = Readonly<Record<string, number | string | null>>;

/** Keys that are not plotted. */
const NOT_SERIES = new Set(['step', 'time', 'epoch']);

export interface Series {
  readonly x: number[];
  readonly y: number[];
}

/** Append-only (by step) columns of every numeric key of the records; mutable, not reactive: wrap snapshots. */
export class MetricColumns {
  readonly byKey = new Map<string, Series>();
  /** Records seen, for the UI's "n steps" note. */
  count = 0;

  append(records: readonly MetricRecordLike[]): void {
    for (const r of records) {
      const step = r.step;
      if (typeof step !== 'number' || !Number.isFinite(step)) continue;
      this.count++;
      for (const [key, v] of Object.entries(r)) {
        if (NOT_SERIES.has(key) || typeof v !== 'number') continue;
        let s = this.byKey.get(key);
        if (!s) {
          s = { x: [], y: [] };
          this.byKey.set(key, s);
        }
        const last = s.x.length > 0 ? s.x[s.x.length - 1]! : -Infinity;
        if (step <= last) {
          const keep = lowerBound(s.x, step);
          s.x.length = keep;
          s.y.length = keep;
        }
        s.x.push(step);
        s.y.push(v);
      }
    }
  }

  get(key: string): Series {
    return this.byKey.get(key) ?? { x: [], y: [] };
  }

  /** The last value of a key, or null. */
  last(key: string): number | null {
    const s = this.byKey.get(key);
    return s && s.y.length > 0 ? s.y[s.y.length - 1]! : null;
  }
}

/** First index whose value is >= v in an ascending array. */
export function lowerBound(xs: readonly number[], v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Series on one shared, ascending x (the union of their steps); null where a series has no point. */
export function alignSeries(series: readonly Series[]): { x: number[]; ys: (number | null)[][] } {
  if (series.length === 1) return { x: series[0]!.x.slice(), ys: [series[0]!.y.slice()] };
  // The common case (loss, loss_gen, loss_dis of one run): the same steps, nothing to merge.
  const first = series[0]!.x;
  if (series.every((s) => s.x.length === first.length && s.x.every((v, i) => v === first[i])))
    return { x: first.slice(), ys: series.map((s) => s.y.slice()) };
  const idx = series.map(() => 0);
  const x: number[] = [];
  const ys: (number | null)[][] = series.map(() => []);
  for (;;) {
    let next = Infinity;
    for (let k = 0; k < series.length; k++) {
      const s = series[k]!;
      if (idx[k]! < s.x.length && s.x[idx[k]!]! < next) next = s.x[idx[k]!]!;
    }
    if (next === Infinity) break;
    x.push(next);
    for (let k = 0; k < series.length; k++) {
      const s = series[k]!;
      if (idx[k]! < s.x.length && s.x[idx[k]!] === next) {
        ys[k]!.push(s.y[idx[k]!]!);
        idx[k]!++;
      } else ys[k]!.push(null);
    }
  }
  return { x, ys };
}
