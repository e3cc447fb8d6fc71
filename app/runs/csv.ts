// A run's metrics.jsonl as one CSV table for pandas: one row per step, train and eval columns side by side.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { isEventLine, isStepLine, metricsPath, readMetrics, type MetricLine } from './metrics.js';
import {
  checkExportTarget,
  isRunFolder,
  putExportFile,
  RUN_EXPORT_FOLDER,
  writeNewFile,
  type ExportOptions,
} from './paths.js';

/** The CSV export's name in the run's export folder: RUN_DIR/export/metrics.csv. */
export const METRICS_CSV = 'metrics.csv';

/** One CSV cell: numbers as JavaScript prints them (shortest round trip), text quoted when it must be (RFC 4180). */
function cell(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/**
 * The table of metrics lines: one row per step (ascending), the train and eval lines of a step merged into it.
 * Columns: `step`, then the training lines' keys, then the evaluations' keys, each in order of first appearance;
 * an eval key that a training line also has (epoch, time) is named `eval_<key>`, so neither hides the other.
 * Empty cells where a step has no value; of two lines of one kind at a step, the later wins.
 */
export function metricsTable(lines: readonly MetricLine[]): { columns: string[]; rows: string[][] } {
  const trainKeys = new Set<string>();
  const evalKeys = new Set<string>();
  for (const r of lines) {
    if (typeof r.step !== 'number' || isEventLine(r)) continue;
    const keys = isStepLine(r) ? trainKeys : evalKeys;
    for (const k of Object.keys(r)) if (k !== 'step') keys.add(k);
  }
  const evalColumn = (k: string): string => (trainKeys.has(k) ? `eval_${k}` : k);
  const columns = ['step', ...trainKeys, ...[...evalKeys].map(evalColumn)];
  const index = new Map(columns.map((c, i) => [c, i]));

  const byStep = new Map<number, unknown[]>();
  for (const r of lines) {
    if (typeof r.step !== 'number' || isEventLine(r)) continue;
    const row = byStep.get(r.step) ?? [r.step];
    byStep.set(r.step, row);
    const train = isStepLine(r);
    for (const [k, v] of Object.entries(r)) {
      if (k === 'step') continue;
      row[index.get(train ? k : evalColumn(k)) as number] = v;
    }
  }
  const rows = [...byStep.keys()]
    .sort((a, b) => a - b)
    .map((step) => {
      const row = byStep.get(step) as unknown[];
      return columns.map((_, i) => cell(row[i]));
    });
  return { columns, rows };
}

/** The CSV text of metrics lines (header, then the rows of metricsTable; LF line ends). */
export function metricsCsv(lines: readonly MetricLine[]): string {
  const { columns, rows } = metricsTable(lines);
  return [columns.map(cell), ...rows].map((r) => `${r.join(',')}\n`).join('');
}

/**
 * Writes a run's metrics as CSV to `out` (default RUN_DIR/export/metrics.csv, which a re-export replaces) by the
 * one export rule (checkExportTarget), put in place whole. Needs no engine: the host does it. Returns the path,
 * the rows written and the last step in them.
 */
export function exportMetricsCsv(
  runDir: string,
  out?: string,
  opts: ExportOptions = {},
): { path: string; rows: number; step: number } {
  if (!isRunFolder(runDir)) throw new Error(`${runDir}: not a run folder (no config.json of a run)`);
  if (!fs.existsSync(metricsPath(runDir))) throw new Error(`${runDir}: no metrics.jsonl to export`);
  const dflt = nodePath.join(runDir, RUN_EXPORT_FOLDER, METRICS_CSV);
  const isDefault = out === undefined || nodePath.resolve(out) === nodePath.resolve(dflt);
  const check = (): string =>
    checkExportTarget(out ?? dflt, {
      runDir,
      folder: false,
      isDefault,
      ...(opts.overwrite !== undefined ? { overwrite: opts.overwrite } : {}),
      ...(opts.within !== undefined ? { within: opts.within } : {}),
      ...(opts.notWithin !== undefined ? { notWithin: opts.notWithin } : {}),
    });
  const target = check();
  const lines = readMetrics(runDir);
  const { rows } = metricsTable(lines);
  fs.mkdirSync(nodePath.dirname(target), { recursive: true });
  // checked again now that its folder exists: a link made meanwhile along the path is seen
  if (check() !== target)
    throw new Error(
      `export path ${nodePath.resolve(out ?? target)} changed while the export was prepared; export again`,
    );
  const csv = Buffer.from(metricsCsv(lines), 'utf8');
  putExportFile(target, { replace: opts.overwrite === true || isDefault }, (tmp) => writeNewFile(tmp, csv));
  const step = lines.reduce((m, r) => (typeof r.step === 'number' ? Math.max(m, r.step) : m), 0);
  return { path: target, rows: rows.length, step };
}
