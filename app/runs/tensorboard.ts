// TensorBoard event files beside metrics.jsonl: the writer appendMetrics feeds (train/* and eval/* scalar tags) and a
// reader written from the format spec (TFRecord framing, masked CRC32C, the Event protobuf). No tfjs, no protobuf lib.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { fsyncFolder, writing } from './disk.js';

// --- CRC32C (Castagnoli, reflected polynomial 0x82F63B78) and TFRecord framing ---

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC32C_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: a CRC of data that itself holds CRCs is a poor check, so it is rotated and offset. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

/** One TFRecord: uint64 length, masked CRC of those 8 bytes, the data, masked CRC of the data (all little-endian). */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.byteLength);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.byteLength), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.byteLength, maskedCrc32c(data), true);
  return out;
}

/** The records of a TFRecord file's bytes. A last record cut short (a crash mid-write) ends the list: `truncated`. */
export function readRecords(bytes: Uint8Array): {
  records: { data: Uint8Array; start: number; end: number }[];
  truncated: boolean;
} {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: { data: Uint8Array; start: number; end: number }[] = [];
  let at = 0;
  while (at < bytes.byteLength) {
    if (bytes.byteLength - at < 12) return { records, truncated: true };
    const len = view.getBigUint64(at, true);
    if (view.getUint32(at + 8, true) !== maskedCrc32c(bytes.subarray(at, at + 8)))
      throw new Error(
        `TFRecord at byte ${at}: the length's CRC does not match (not an event file, or damaged)`,
      );
    if (len > BigInt(bytes.byteLength - at - 16)) return { records, truncated: true };
    const n = Number(len);
    const data = bytes.subarray(at + 12, at + 12 + n);
    if (view.getUint32(at + 12 + n, true) !== maskedCrc32c(data))
      throw new Error(`TFRecord at byte ${at}: the data's CRC does not match (damaged)`);
    records.push({ data, start: at, end: at + 16 + n });
    at += 16 + n;
  }
  return { records, truncated: false };
}

// --- the protobuf wire format, for the few messages an event file holds ---

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

class ProtoWriter {
  private readonly parts: number[] = [];

  private varint(v: number): void {
    // non-negative safe integers only: steps, lengths, tags, enums
    while (v >= 0x80) {
      this.parts.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.parts.push(v);
  }

  private key(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  uint(field: number, v: number): this {
    this.key(field, WIRE_VARINT);
    this.varint(v);
    return this;
  }

  double(field: number, v: number): this {
    this.key(field, WIRE_I64);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.parts.push(...b);
    return this;
  }

  float(field: number, v: number): this {
    this.key(field, WIRE_I32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.parts.push(...b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.key(field, WIRE_LEN);
    this.varint(b.byteLength);
    this.parts.push(...b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** One field as read: its number, wire type and value (a varint as bigint, fixed widths and lengths as bytes). */
type Field =
  | { readonly n: number; readonly wire: typeof WIRE_VARINT; readonly v: bigint }
  | {
      readonly n: number;
      readonly wire: typeof WIRE_I64 | typeof WIRE_I32 | typeof WIRE_LEN;
      readonly b: Uint8Array;
    };

function readVarint(b: Uint8Array, at: number): [bigint, number] {
  let v = 0n;
  for (let shift = 0n; ; shift += 7n) {
    if (at >= b.byteLength || shift > 63n) throw new Error('protobuf: a varint runs past its message');
    const byte = b[at++] as number;
    v |= BigInt(byte & 0x7f) << shift;
    if (byte < 0x80) return [v, at];
  }
}

/** The fields of one message, in order; unknown fields are returned too, so callers skip what they do not read. */
function fields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  let at = 0;
  while (at < b.byteLength) {
    const [key, next] = readVarint(b, at);
    at = next;
    const n = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === WIRE_VARINT) {
      const [v, after] = readVarint(b, at);
      out.push({ n, wire, v });
      at = after;
      continue;
    }
    let len: number;
    if (wire === WIRE_I64) len = 8;
    else if (wire === WIRE_I32) len = 4;
    else if (wire === WIRE_LEN) {
      const [l, after] = readVarint(b, at);
      at = after;
      len = Number(l);
    } else throw new Error(`protobuf: wire type ${wire} (field ${n}) is not used by event files`);
    if (at + len > b.byteLength) throw new Error(`protobuf: field ${n} runs past its message`);
    out.push({ n, wire, b: b.subarray(at, at + len) });
    at += len;
  }
  return out;
}

function f64(b: Uint8Array, at = 0): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getFloat64(at, true);
}

function f32(b: Uint8Array, at = 0): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getFloat32(at, true);
}

// --- Event, Summary, SessionLog and TensorProto (tensorboard/compat/proto/*.proto) ---

/** SessionLog.SessionStatus.START: TensorBoard's legacy loader drops every event at or after its step on a restart. */
export const SESSION_START = 1;
const DT_FLOAT = 1;
const DT_DOUBLE = 2;

/** One scalar of an event: a Summary.Value with simple_value, or a TF2 scalar tensor (DT_FLOAT or DT_DOUBLE). */
export interface EventScalar {
  readonly tag: string;
  readonly value: number;
}

/** The parts of an Event this workbench reads; other kinds (graphs, images, histograms) leave `scalars` empty. */
export interface TfEvent {
  readonly wallTime: number;
  readonly step: number;
  readonly fileVersion?: string;
  /** SessionLog.status, when the event is a session log (1 START, 2 STOP, 3 CHECKPOINT). */
  readonly sessionStatus?: number;
  readonly scalars: readonly EventScalar[];
}

/** The one number of a scalar TensorProto: float_val / double_val (packed or not), or tensor_content. */
function tensorScalar(b: Uint8Array): number | undefined {
  let dtype = 0;
  let content: Uint8Array | undefined;
  const vals: number[] = [];
  for (const f of fields(b)) {
    if (f.n === 1 && f.wire === WIRE_VARINT) dtype = Number(f.v);
    else if (f.n === 4 && f.wire === WIRE_LEN) content = f.b;
    else if (f.n === 5 && f.wire === WIRE_I32) vals.push(f32(f.b));
    else if (f.n === 5 && f.wire === WIRE_LEN)
      for (let i = 0; i + 4 <= f.b.byteLength; i += 4) vals.push(f32(f.b, i));
    else if (f.n === 6 && f.wire === WIRE_I64) vals.push(f64(f.b));
    else if (f.n === 6 && f.wire === WIRE_LEN)
      for (let i = 0; i + 8 <= f.b.byteLength; i += 8) vals.push(f64(f.b, i));
  }
  if (dtype !== DT_FLOAT && dtype !== DT_DOUBLE) return undefined;
  if (content !== undefined && content.byteLength > 0) {
    const width = dtype === DT_FLOAT ? 4 : 8;
    if (content.byteLength !== width) return undefined; // not a scalar
    return dtype === DT_FLOAT ? f32(content) : f64(content);
  }
  return vals.length === 1 ? vals[0] : undefined;
}

function summaryValue(b: Uint8Array): EventScalar | undefined {
  let tag = '';
  let value: number | undefined;
  for (const f of fields(b)) {
    if (f.n === 1 && f.wire === WIRE_LEN) tag = new TextDecoder().decode(f.b);
    else if (f.n === 2 && f.wire === WIRE_I32) value = f32(f.b);
    else if (f.n === 8 && f.wire === WIRE_LEN) value = tensorScalar(f.b);
  }
  return value === undefined ? undefined : { tag, value };
}

export function decodeEvent(b: Uint8Array): TfEvent {
  let wallTime = 0;
  let step = 0;
  let fileVersion: string | undefined;
  let sessionStatus: number | undefined;
  const scalars: EventScalar[] = [];
  for (const f of fields(b)) {
    if (f.n === 1 && f.wire === WIRE_I64) wallTime = f64(f.b);
    else if (f.n === 2 && f.wire === WIRE_VARINT) step = Number(BigInt.asIntN(64, f.v));
    else if (f.n === 3 && f.wire === WIRE_LEN) fileVersion = new TextDecoder().decode(f.b);
    else if (f.n === 5 && f.wire === WIRE_LEN) {
      for (const v of fields(f.b)) {
        if (v.n !== 1 || v.wire !== WIRE_LEN) continue;
        const s = summaryValue(v.b);
        if (s) scalars.push(s);
      }
    } else if (f.n === 7 && f.wire === WIRE_LEN) {
      sessionStatus = 0;
      for (const s of fields(f.b)) if (s.n === 1 && s.wire === WIRE_VARINT) sessionStatus = Number(s.v);
    }
  }
  return {
    wallTime,
    step,
    scalars,
    ...(fileVersion !== undefined ? { fileVersion } : {}),
    ...(sessionStatus !== undefined ? { sessionStatus } : {}),
  };
}

/** An Event as written here: the file_version header, a SessionLog, or a Summary of simple_value scalars. */
export function encodeEvent(e: {
  wallTime: number;
  step: number;
  fileVersion?: string;
  sessionStatus?: number;
  scalars?: readonly EventScalar[];
}): Uint8Array {
  const w = new ProtoWriter().double(1, e.wallTime).uint(2, e.step);
  if (e.fileVersion !== undefined) w.string(3, e.fileVersion);
  if (e.sessionStatus !== undefined) w.bytes(7, new ProtoWriter().uint(1, e.sessionStatus).finish());
  if (e.scalars) {
    const summary = new ProtoWriter();
    for (const s of e.scalars)
      summary.bytes(1, new ProtoWriter().string(1, s.tag).float(2, s.value).finish());
    w.bytes(5, summary.finish());
  }
  return w.finish();
}

// --- a run's event files ---

const EVENT_FILE_PREFIX = 'events.out.tfevents.';
/** The first record of every event file; TensorBoard reads the rest as version 2 (SessionLog restarts, no step guessing). */
export const FILE_VERSION = 'brain.Event:2';

/** A run's event files in the order TensorBoard reads them (by name; names start with the creation time). */
export function eventFiles(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(EVENT_FILE_PREFIX))
    .sort()
    .map((n) => nodePath.join(dir, n));
}

/** Every event of one file, and whether its last record was cut short; throws on a CRC or protobuf error. */
export function readEventFile(path: string): { events: TfEvent[]; truncated: boolean } {
  const { records, truncated } = readRecords(fs.readFileSync(path));
  return { events: records.map((r) => decodeEvent(r.data)), truncated };
}

/** One point of a TensorBoard scalar series. */
export interface ScalarPoint {
  readonly step: number;
  readonly value: number;
  readonly wallTime: number;
}

/**
 * The scalar series of a run's event files as TensorBoard shows them: files read in name order, and a point
 * replacing every earlier point of its tag at its step or later (the data server's preemption: a resumed run's
 * steps replace those a crash left after the checkpoint). Tags in order of first appearance.
 */
export function readRunScalars(dir: string): Map<string, ScalarPoint[]> {
  const series = new Map<string, ScalarPoint[]>();
  for (const file of eventFiles(dir)) {
    for (const e of readEventFile(file).events) {
      for (const s of e.scalars) {
        const kept = (series.get(s.tag) ?? []).filter((p) => p.step < e.step);
        kept.push({ step: e.step, value: s.value, wallTime: e.wallTime });
        series.set(s.tag, kept);
      }
    }
  }
  return series;
}

/**
 * The TensorBoard scalars of one metrics.jsonl line: a training line (it has a loss) gives `train/<key>`, any other
 * line (an evaluation: knn_top1, val_top1, val_loss, ...) gives `eval/<key>`, so the two never share a tag at a step.
 * `step` and `epoch` are the x-axis, not curves; non-numbers (time) and non-finite values are left out.
 */
export function metricScalars(rec: Readonly<Record<string, unknown>>): EventScalar[] {
  // an event line (a change of engine) is no measurement
  if (typeof rec['event'] === 'string') return [];
  const group = typeof rec['loss'] === 'number' ? 'train' : 'eval';
  const out: EventScalar[] = [];
  for (const [k, v] of Object.entries(rec)) {
    if (k === 'step' || k === 'epoch' || typeof v !== 'number' || !Number.isFinite(v)) continue;
    out.push({ tag: `${group}/${k}`, value: v });
  }
  return out;
}

/** The line's own time (metrics lines carry an ISO `time`) in seconds, else now: the event file stays derivable. */
function wallTimeOf(rec: Readonly<Record<string, unknown>>): number {
  const t = typeof rec['time'] === 'string' ? Date.parse(rec['time']) : NaN;
  return (Number.isFinite(t) ? t : Date.now()) / 1000;
}

/** Where a run's event-file problems are told (the job sends them as warnings; default: stderr). */
let warnSink: (text: string) => void = (text) => process.stderr.write(`warning: ${text}\n`);

/** Routes event-file warnings (a worker turns them into its job's `log` events). */
export function onEventFileWarning(sink: (text: string) => void): void {
  warnSink = sink;
}

/** This process's writer of one run folder: the file it appends to, or that it stopped after a failed write. */
interface RunWriter {
  path?: string;
  /** metrics.jsonl was cut back to this step (a resume): the next file starts with a SessionLog START after it. */
  resumedAt?: number;
  failed?: boolean;
}

const writers = new Map<string, RunWriter>();
let filesMade = 0;

/**
 * A new event file's name, `events.out.tfevents.<unix seconds>.<host>.<pid>.<n>` as TensorFlow names them, made to
 * sort after every event file already in `dir` (TensorBoard reads them by name, and later data must come later).
 */
export function newEventFileName(dir: string, now = Date.now()): string {
  const last = eventFiles(dir).at(-1);
  let seconds = Math.floor(now / 1000);
  const tail = `.${os.hostname()}.${process.pid}.${filesMade++}`;
  if (last !== undefined) {
    const lastName = nodePath.basename(last);
    const lastSeconds = Number(lastName.slice(EVENT_FILE_PREFIX.length).split('.')[0]);
    if (`${EVENT_FILE_PREFIX}${seconds}${tail}` <= lastName && Number.isSafeInteger(lastSeconds))
      seconds = Math.max(seconds, lastSeconds + 1);
  }
  return `${EVENT_FILE_PREFIX}${seconds}${tail}`;
}

function openEventFile(dir: string, w: RunWriter, firstStep: number): string {
  const fresh = eventFiles(dir).length === 0;
  const path = nodePath.join(dir, newEventFileName(dir));
  const now = Date.now() / 1000;
  const head = [frameRecord(encodeEvent({ wallTime: now, step: 0, fileVersion: FILE_VERSION }))];
  // TensorBoard's legacy loader takes a run's first START as its beginning and a later one as a restart, dropping
  // everything at or after its step; the data server needs none (a repeated step replaces the later ones anyway)
  if (w.resumedAt !== undefined || fresh) {
    const step = w.resumedAt !== undefined ? w.resumedAt + 1 : firstStep;
    head.push(frameRecord(encodeEvent({ wallTime: now, step, sessionStatus: SESSION_START })));
  }
  fs.writeFileSync(path, Buffer.concat(head), { flag: 'wx' });
  return path;
}

function problem(dir: string, w: RunWriter, what: string, e: unknown): void {
  w.failed = true;
  const why = e instanceof Error ? e.message : String(e);
  warnSink(
    `TensorBoard event file in ${dir}: ${what} failed (${why}); metrics.jsonl goes on, the event file stops ` +
      `until the run is resumed`,
  );
}

/**
 * Appends one metrics.jsonl line to the run's event file as one Event record (one write, like the line itself).
 * The first line of a process's session opens a new file. Never throws: a failure is told once, and that session's
 * event file stops (a record cut mid-write would hide every later one from TensorBoard) while metrics.jsonl goes on.
 */
export function appendEvent(dir: string, rec: Readonly<Record<string, unknown>>): void {
  const key = nodePath.resolve(dir);
  const w = writers.get(key) ?? {};
  writers.set(key, w);
  if (w.failed) return;
  const step = typeof rec['step'] === 'number' && Number.isSafeInteger(rec['step']) ? rec['step'] : undefined;
  const scalars = metricScalars(rec);
  if (step === undefined || step < 0 || scalars.length === 0) return;
  try {
    w.path ??= openEventFile(dir, w, step);
    fs.appendFileSync(w.path, frameRecord(encodeEvent({ wallTime: wallTimeOf(rec), step, scalars })));
  } catch (e) {
    problem(dir, w, w.path === undefined ? 'creating it' : 'appending to it', e);
  }
}

/**
 * Replaces an event file whole (tmp, fsync, rename). The temporary name has no "tfevents" in it: TensorBoard takes
 * every such name in a run folder for an event file, and would read a half-written one.
 */
function replaceEventFile(path: string, data: Uint8Array): void {
  const tmp = nodePath.join(nodePath.dirname(path), `.event-file-cut.${process.pid}.tmp`);
  try {
    writing(path, () => {
      const fd = fs.openSync(tmp, 'w');
      try {
        for (let done = 0; done < data.byteLength;) done += fs.writeSync(fd, data, done);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    });
    fs.renameSync(tmp, path);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  fsyncFolder(nodePath.dirname(nodePath.resolve(path)));
}

/**
 * A resume cut metrics.jsonl back to `step`: the run's event files are cut to the same steps (each replaced whole,
 * only when something goes), and the resumed session writes a new file whose SessionLog START marks the restart.
 * A TensorBoard started later shows exactly metrics.jsonl; one already running keeps what it read and drops the
 * cut steps as the resumed run writes them again. Never throws; a file that cannot be read is left as it is.
 */
export function cutEventFiles(dir: string, step: number): void {
  const key = nodePath.resolve(dir);
  const w: RunWriter = { resumedAt: step };
  writers.set(key, w);
  for (const file of eventFiles(dir)) {
    try {
      const bytes = fs.readFileSync(file);
      const { records, truncated } = readRecords(bytes);
      const kept = records.filter((r) => decodeEvent(r.data).step <= step);
      if (kept.length === records.length && !truncated) continue;
      replaceEventFile(file, Buffer.concat(kept.map((r) => bytes.subarray(r.start, r.end))));
    } catch (e) {
      warnSink(
        `TensorBoard event file ${file} was not cut back to step ${step} (${e instanceof Error ? e.message : e})`,
      );
    }
  }
}

/** Forgets this process's writers (tests: a fresh process's view of a run folder). */
export function resetEventWriters(): void {
  writers.clear();
}
