// RUN_DIR/metrics.jsonl: the one reader (tolerant of a line cut by a crash), the appender and the atomic cut-back.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { replaceFile, writing } from './disk.js';
import { appendEvent, cutEventFiles } from './tensorboard.js';

/** One line of metrics.jsonl: a training step (step, loss, ...) or an evaluation (step, knn_top1 / val_top1, ...). */
export type MetricLine = Readonly<Record<string, unknown>> & { readonly step?: unknown };

/** A training line of a pretraining run's metrics.jsonl. */
export interface StepRecord {
  readonly step: number;
  readonly loss: number;
  readonly loss_gen?: number;
  readonly loss_dis?: number;
  readonly lr: number;
  readonly agreement: number;
  readonly img_per_s: number;
  readonly epoch: number;
  readonly time: string;
}

/** A training line of a fine-tuning run's metrics.jsonl. */
export interface FinetuneStepRecord {
  readonly step: number;
  readonly loss: number;
  readonly lr: number;
  /** 0-based epoch the step belongs to. */
  readonly epoch: number;
  readonly img_per_s: number;
  readonly time: string;
}

/** One evaluation line of metrics.jsonl, written at the end of each epoch (and of the run). */
export interface FinetuneEvalRecord {
  readonly step: number;
  /** 0-based epoch just finished. */
  readonly epoch: number;
  readonly val_top1: number;
  /** Mean cross-entropy on the validation split (no smoothing). */
  readonly val_loss: number;
  readonly time: string;
}

export function metricsPath(dir: string): string {
  return nodePath.join(dir, 'metrics.jsonl');
}

/**
 * The lines of a metrics.jsonl text: `records` are the lines that parse as JSON objects, in order, with their text
 * (so a cut-back keeps them byte for byte); `dropped` counts the others (a last line cut by kill -9 or a crash).
 */
export function parseMetrics(text: string): {
  records: { line: string; record: MetricLine }[];
  dropped: number;
} {
  const records: { line: string; record: MetricLine }[] = [];
  let dropped = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const r = JSON.parse(line) as unknown;
      if (r && typeof r === 'object' && !Array.isArray(r)) records.push({ line, record: r as MetricLine });
      else dropped++;
    } catch {
      dropped++;
    }
  }
  return { records, dropped };
}

/** Every readable line of a run's metrics.jsonl ([] when there is none). */
export function readMetrics(dir: string): MetricLine[] {
  const p = metricsPath(dir);
  if (!fs.existsSync(p)) return [];
  return parseMetrics(fs.readFileSync(p, 'utf8')).records.map((r) => r.record);
}

/** A training step's line (it has a loss), as opposed to an evaluation's. */
export function isStepLine(r: MetricLine): boolean {
  return typeof r.step === 'number' && typeof r['loss'] === 'number';
}

/**
 * An event line, not a measurement: `{"event": "engine", "step", "engine", ...}` is written when a run changes engine
 * (the workbench, or digpt_torch on a cluster: scaleout/). Tables, charts and TensorBoard leave event lines out.
 */
export function isEventLine(r: MetricLine): boolean {
  return typeof r['event'] === 'string';
}

/** The engine name the workbench writes in its engine events (digpt_torch writes its own). */
export const WORKBENCH_ENGINE = 'workbench';

/**
 * Notes a change of engine: when the run's last engine event names another engine (it trained on a cluster), an
 * event line saying that the workbench goes on from `step`. A run that never left the workbench gets none.
 */
export function markEngine(
  dir: string,
  step: number,
  detail: Readonly<Record<string, string | number>> = {},
): boolean {
  const last = readMetrics(dir)
    .filter((r) => r['event'] === 'engine')
    .at(-1);
  if (!last || last['engine'] === WORKBENCH_ENGINE) return false;
  appendMetrics(dir, {
    event: 'engine',
    step,
    engine: WORKBENCH_ENGINE,
    ...detail,
    time: new Date().toISOString(),
  });
  return true;
}

/** The last step trained according to metrics.jsonl (0 when none). */
export function lastLoggedStep(records: readonly MetricLine[]): number {
  let step = 0;
  for (const r of records) if (isStepLine(r)) step = Math.max(step, r.step as number);
  return step;
}

/**
 * Appends one JSON line to RUN_DIR/metrics.jsonl (a full disk is reported naming the file), then the same scalars
 * to the run's TensorBoard event file (app/runs/tensorboard.ts), which never throws: the line is written first.
 */
export function appendMetrics(dir: string, rec: object): void {
  const p = metricsPath(dir);
  writing(p, () => fs.appendFileSync(p, `${JSON.stringify(rec)}\n`));
  appendEvent(dir, rec as MetricLine);
}

/**
 * Keeps only the lines of steps <= `step` (those after a checkpoint are computed again on resume), and drops a line
 * cut by a crash. The file is replaced whole (metrics.jsonl.tmp, fsync, rename), so a kill -9 at any moment leaves
 * either the old lines or the kept ones, never an empty file. Nothing is written when nothing is to be dropped.
 * The TensorBoard event files are cut to the same steps, and the resumed session writes a new one (cutEventFiles).
 */
export function truncateMetrics(dir: string, step: number): { kept: number; dropped: number } {
  const p = metricsPath(dir);
  if (!fs.existsSync(p)) return { kept: 0, dropped: 0 };
  const text = fs.readFileSync(p, 'utf8');
  cutEventFiles(dir, step);
  const { records, dropped: unreadable } = parseMetrics(text);
  const kept = records.filter((r) => typeof r.record.step === 'number' && r.record.step <= step);
  const dropped = unreadable + records.length - kept.length;
  // a file ending without a newline would glue the next appended line to its last one
  if (dropped === 0 && (text === '' || text.endsWith('\n'))) return { kept: kept.length, dropped: 0 };
  replaceFile(p, kept.map((r) => `${r.line}\n`).join(''));
  return { kept: kept.length, dropped };
}
