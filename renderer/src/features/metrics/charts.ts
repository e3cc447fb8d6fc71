// Pure: which charts a run has and the table each one draws, from the run's metric columns.
import { downsampleMinMax, type Table } from './downsample.js';
import { ema } from './smooth.js';
import { alignSeries, type MetricColumns, type Series } from './series.js';

export interface ChartSpec {
  readonly id: string;
  readonly title: string;
  readonly keys: readonly string[];
  /** Also draw an EMA of each key (raw lines are drawn faint). */
  readonly smooth: boolean;
  readonly logY?: boolean;
}

/** The charts of a run; eval lines (knn_top1, val_top1) carry no loss and have their own chart. */
export const RUN_CHARTS: readonly ChartSpec[] = [
  {
    id: 'loss',
    title: 'Loss',
    keys: ['loss', 'loss_gen', 'loss_dis'],
    smooth: true,
  },
  { id: 'lr', title: 'Learning rate', keys: ['lr'], smooth: false },
  { id: 'throughput', title: 'Images / s', keys: ['img_per_s'], smooth: true },
  { id: 'agreement', title: 'Teacher agreement', keys: ['agreement'], smooth: true },
  { id: 'eval', title: 'Eval accuracy (top-1)', keys: ['knn_top1', 'val_top1'], smooth: false },
];

export interface ChartData {
  /** uPlot's data: x first, then one array per line. */
  readonly table: Table;
  /** One per line of the table: its label and whether it is a raw line under its EMA. */
  readonly lines: readonly ChartLine[];
}

export interface ChartLine {
  readonly label: string;
  /** The series it draws (a raw line and its EMA share one). */
  readonly key: string;
  readonly faint: boolean;
  /** Palette index: the key's place in the chart's spec, or the run's place in the comparison, so colours stay put. */
  readonly color: number;
}

/** The lines of a chart: each present key raw (faint when smoothed) and its EMA; downsampled to `buckets`. */
export function chartData(spec: ChartSpec, cols: MetricColumns, alpha: number, buckets: number): ChartData {
  const keys = spec.keys.filter((k) => (cols.byKey.get(k)?.x.length ?? 0) > 0);
  if (keys.length === 0) return { table: { x: [], ys: [] }, lines: [] };
  return build(
    keys.map((k) => cols.get(k)),
    keys,
    keys.map((k) => spec.keys.indexOf(k)),
    spec.smooth ? alpha : 0,
    buckets,
  );
}

/** The same metric of several runs, overlaid on one step axis (labels: the run titles). */
export function compareData(
  series: readonly Series[],
  labels: readonly string[],
  alpha: number,
  buckets: number,
): ChartData {
  const present = series
    .map((s, i) => ({ s, i, label: labels[i] ?? `run ${i}` }))
    .filter((p) => p.s.x.length > 0);
  if (present.length === 0) return { table: { x: [], ys: [] }, lines: [] };
  return build(
    present.map((p) => p.s),
    present.map((p) => p.label),
    present.map((p) => p.i),
    alpha,
    buckets,
    true,
  );
}

function build(
  series: readonly Series[],
  labels: readonly string[],
  colors: readonly number[],
  alpha: number,
  buckets: number,
  smoothOnly = false,
): ChartData {
  const aligned = alignSeries(series);
  const ys: (number | null)[][] = [];
  const lines: ChartLine[] = [];
  aligned.ys.forEach((col, i) => {
    const label = labels[i]!;
    const color = colors[i]!;
    if (alpha > 0) {
      if (!smoothOnly) {
        ys.push(col);
        lines.push({ label: `${label} (raw)`, key: label, faint: true, color });
      }
      ys.push(ema(col, alpha));
      lines.push({ label: smoothOnly ? label : `${label} (EMA)`, key: label, faint: false, color });
    } else {
      ys.push(col);
      lines.push({ label, key: label, faint: false, color });
    }
  });
  return { table: downsampleMinMax({ x: aligned.x, ys }, buckets), lines };
}
