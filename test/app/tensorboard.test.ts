// TensorBoard event files: the reader against files other programs wrote, and what appendMetrics writes beside
// metrics.jsonl (train/* and eval/* tags, a resume's cut-back and new file, a failed write that loses nothing).
import { after, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import { appendMetrics, readMetrics, truncateMetrics } from '../../app/runs/metrics.js';
import {
  crc32c,
  decodeEvent,
  eventFiles,
  FILE_VERSION,
  frameRecord,
  maskedCrc32c,
  metricScalars,
  newEventFileName,
  onEventFileWarning,
  readEventFile,
  readRecords,
  readRunScalars,
  resetEventWriters,
  SESSION_START,
} from '../../app/runs/tensorboard.js';

const FIXTURES = nodePath.join(import.meta.dirname, 'fixtures', 'tensorboard');
const BIN = nodePath.resolve(import.meta.dirname, '..', '..', 'bin', 'digpt.js');
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-tb-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let warnings: string[] = [];
onEventFileWarning((text) => warnings.push(text));
beforeEach(() => {
  warnings = [];
  resetEventWriters();
});

let runs = 0;
function runDir(): string {
  const dir = nodePath.join(tmp, `run-${runs++}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(nodePath.join(dir, 'metrics.jsonl'), '');
  return dir;
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A pretraining step's metrics line, as PretrainRun writes it. */
function trainLine(step: number, loss: number) {
  return {
    step,
    loss,
    loss_gen: loss / 2,
    loss_dis: loss / 2,
    lr: 0.001 * step,
    agreement: 0.1,
    img_per_s: 50,
    epoch: 0,
    time: new Date(Date.UTC(2025, 0, 1, 0, 0, step)).toISOString(),
  };
}

describe('the format: CRC32C and TFRecord framing', () => {
  it('CRC32C gives the standard check value and the RFC 3720 vector; the mask is TensorBoard’s', () => {
    assert.equal(crc32c(bytes('123456789')), 0xe3069283);
    assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
    // the masked CRC of a real file_version record's data (tensorboard/data/server/masked_crc.rs)
    assert.equal(maskedCrc32c(bytes('\x1a\x11CRC test, one two')), 0x5794d08a);
  });

  it('reads back framed records, reports a cut last record, and refuses a damaged one naming its byte', () => {
    const a = frameRecord(bytes('first'));
    const b = frameRecord(bytes('second record'));
    const file = new Uint8Array([...a, ...b]);
    const { records, truncated } = readRecords(file);
    assert.deepEqual(
      records.map((r) => new TextDecoder().decode(r.data)),
      ['first', 'second record'],
    );
    assert.equal(truncated, false);

    const cut = readRecords(file.subarray(0, file.length - 3));
    assert.equal(cut.records.length, 1);
    assert.equal(cut.truncated, true);

    const damaged = file.slice();
    damaged.set([(damaged[a.length + 14] as number) ^ 0x01], a.length + 14); // a byte of the second record's data
    assert.throws(() => readRecords(damaged), new RegExp(`TFRecord at byte ${a.length}: the data's CRC`));
    const badLength = file.slice();
    badLength.set([(badLength[0] as number) ^ 0x01], 0);
    assert.throws(() => readRecords(badLength), /TFRecord at byte 0: the length's CRC/);
  });
});

describe('the reader on event files others wrote', () => {
  it("TensorFlow 1.x (lingvo's test data): bleu/dev's best step 102600 and last step 185200, as lingvo's test says", () => {
    const { events, truncated } = readEventFile(nodePath.join(FIXTURES, 'lingvo-bleu.tfevents'));
    assert.equal(truncated, false);
    assert.equal(events[0]?.fileVersion, FILE_VERSION);
    assert.equal(events.length, 361);
    const tags = new Set(events.flatMap((e) => e.scalars.map((s) => s.tag)));
    assert.deepEqual(
      [...tags],
      [
        'bleu/dev',
        'brevity_penalty/dev',
        'bleu/split:dev',
        'brevity_penalty/split:dev',
        'log_perplexity/dev',
        'log_perplexity/split:dev',
        'runtime/sentence/sec',
      ],
    );
    // as lingvo's BestStepOp reads it: the first value of each step, steps in order, the best is the first maximum
    const bleu = new Map<number, number>();
    for (const e of events)
      for (const s of e.scalars) if (s.tag === 'bleu/dev' && !bleu.has(e.step)) bleu.set(e.step, s.value);
    const steps = [...bleu.keys()].sort((x, y) => x - y);
    let best = 0;
    for (const s of steps) if (best === 0 || (bleu.get(s) as number) > (bleu.get(best) as number)) best = s;
    assert.equal(best, 102600);
    assert.equal(steps.at(-1), 185200);
    assert.equal(steps.length, 360);
    assert.ok([...bleu.values()].every((v) => v > 0 && v < 1));
  });

  it("a file with summary metadata (tfevents-js's test asset): hello = 1 at step 0, as its tests say", () => {
    const { events } = readEventFile(nodePath.join(FIXTURES, 'tfevents-js-hello.tfevents'));
    assert.equal(events.length, 2);
    assert.deepEqual(events[0], {
      wallTime: events[0]?.wallTime,
      step: 0,
      scalars: [],
      fileVersion: FILE_VERSION,
    });
    assert.equal(Math.floor(events[0]?.wallTime as number), 1687811641);
    assert.equal(events[1]?.step, 0);
    assert.deepEqual(events[1]?.scalars, [{ tag: 'hello', value: 1 }]);
  });

  it('the TF2 tensor form: a DT_FLOAT scalar in tensor_content, in packed float_val, and DT_DOUBLE', () => {
    // Event { wall_time: 1.5, step: 7, summary { value { tag: "m", metadata {...}, tensor {...} } } }, by hand
    const metadata = [0x4a, 0x0b, 0x0a, 0x09, 0x0a, 0x07, ...bytes('scalars')];
    const event = (tensor: number[]): Uint8Array => {
      const value = [0x0a, 0x01, ...bytes('m'), ...metadata, 0x42, tensor.length, ...tensor];
      const summary = [0x0a, value.length, ...value];
      return Uint8Array.from([
        0x09,
        0,
        0,
        0,
        0,
        0,
        0,
        0xf8,
        0x3f,
        0x10,
        0x07,
        0x2a,
        summary.length,
        ...summary,
      ]);
    };
    const f32le = (v: number) => [...new Uint8Array(Float32Array.of(v).buffer)];
    const f64le = (v: number) => [...new Uint8Array(Float64Array.of(v).buffer)];
    // dtype DT_FLOAT (1), tensor_shape {} (rank 0), tensor_content: what tf.summary.scalar writes
    const content = decodeEvent(event([0x08, 0x01, 0x12, 0x00, 0x22, 0x04, ...f32le(0.25)]));
    assert.deepEqual(content, { wallTime: 1.5, step: 7, scalars: [{ tag: 'm', value: 0.25 }] });
    const floatVal = decodeEvent(event([0x08, 0x01, 0x12, 0x00, 0x2a, 0x04, ...f32le(-3.5)]));
    assert.deepEqual(floatVal.scalars, [{ tag: 'm', value: -3.5 }]);
    const double = decodeEvent(event([0x08, 0x02, 0x12, 0x00, 0x22, 0x08, ...f64le(0.1)]));
    assert.deepEqual(double.scalars, [{ tag: 'm', value: 0.1 }]);
    // a tensor of two floats is not a scalar: no point
    const pair = decodeEvent(event([0x08, 0x01, 0x22, 0x08, ...f32le(1), ...f32le(2)]));
    assert.deepEqual(pair.scalars, []);
  });
});

describe('the event file appendMetrics writes beside metrics.jsonl', () => {
  it('one file named as TensorFlow names them: file_version, START, then train/* and eval/* tags per line', () => {
    const dir = runDir();
    for (let s = 1; s <= 3; s++) appendMetrics(dir, trainLine(s, 4 - s / 2));
    appendMetrics(dir, { step: 3, epoch: 0.25, knn_top1: 0.55 });

    const files = eventFiles(dir);
    assert.equal(files.length, 1);
    assert.match(
      nodePath.basename(files[0] as string),
      new RegExp(
        `^events\\.out\\.tfevents\\.\\d{10}\\.${os.hostname().replaceAll('.', '\\.')}\\.${process.pid}\\.\\d+$`,
      ),
    );
    const { events, truncated } = readEventFile(files[0] as string);
    assert.equal(truncated, false);
    assert.equal(events[0]?.fileVersion, 'brain.Event:2');
    assert.deepEqual([events[1]?.sessionStatus, events[1]?.step], [SESSION_START, 1]);
    assert.equal(events.length, 2 + 4);
    assert.deepEqual(
      events[2]?.scalars.map((s) => s.tag),
      ['train/loss', 'train/loss_gen', 'train/loss_dis', 'train/lr', 'train/agreement', 'train/img_per_s'],
    );
    // float32 simple_value, the line's own time as wall_time
    assert.deepEqual(events[2]?.scalars[0], { tag: 'train/loss', value: Math.fround(3.5) });
    assert.equal(events[2]?.wallTime, Date.UTC(2025, 0, 1, 0, 0, 1) / 1000);
    assert.deepEqual(
      events.slice(2).map((e) => e.step),
      [1, 2, 3, 3],
    );
    assert.deepEqual(events[5]?.scalars, [{ tag: 'eval/knn_top1', value: Math.fround(0.55) }]);

    // TensorBoard's view equals metrics.jsonl, line for line, at float32
    assert.deepEqual(scalarsOf(dir), metricsAsScalars(dir));
    assert.deepEqual(warnings, []);
  });

  it('a fine-tuning eval line keeps val_loss apart from the training loss; step, epoch and text are no curves', () => {
    assert.deepEqual(metricScalars({ step: 4, loss: 2.3, lr: 0.01, epoch: 0, img_per_s: 9, time: 't' }), [
      { tag: 'train/loss', value: 2.3 },
      { tag: 'train/lr', value: 0.01 },
      { tag: 'train/img_per_s', value: 9 },
    ]);
    assert.deepEqual(metricScalars({ step: 4, epoch: 0, val_top1: 0.5, val_loss: 1.2, time: 't' }), [
      { tag: 'eval/val_top1', value: 0.5 },
      { tag: 'eval/val_loss', value: 1.2 },
    ]);
    assert.deepEqual(metricScalars({ step: 5, loss: null, knn_top1: Number.NaN }), []);
  });

  it('a resume cuts the old file back to the checkpoint and writes a new one that starts with START after it', () => {
    const dir = runDir();
    for (let s = 1; s <= 5; s++) appendMetrics(dir, trainLine(s, 10 + s));
    appendMetrics(dir, { step: 4, epoch: 0.5, knn_top1: 0.4 }); // an eval after the checkpoint: orphaned by a crash
    const old = eventFiles(dir)[0] as string;
    fs.appendFileSync(old, frameRecord(new Uint8Array(40)).subarray(0, 20)); // a record cut by kill -9

    resetEventWriters(); // the resumed run is a new process
    assert.deepEqual(truncateMetrics(dir, 3), { kept: 3, dropped: 3 });
    for (let s = 4; s <= 6; s++) appendMetrics(dir, trainLine(s, 20 + s));

    const files = eventFiles(dir);
    assert.equal(files.length, 2);
    assert.equal(files[0], old);
    const before = readEventFile(old);
    assert.equal(before.truncated, false);
    assert.deepEqual(
      before.events.map((e) => e.step),
      [0, 1, 1, 2, 3],
    );
    const resumed = readEventFile(files[1] as string).events;
    assert.equal(resumed[0]?.fileVersion, FILE_VERSION);
    assert.deepEqual([resumed[1]?.sessionStatus, resumed[1]?.step], [SESSION_START, 4]);
    assert.deepEqual(
      resumed.slice(2).map((e) => e.step),
      [4, 5, 6],
    );

    const loss = readRunScalars(dir)
      .get('train/loss')
      ?.map((p) => [p.step, p.value]);
    assert.deepEqual(loss, [
      [1, 11],
      [2, 12],
      [3, 13],
      [4, 24],
      [5, 25],
      [6, 26],
    ]);
    assert.equal(readRunScalars(dir).has('eval/knn_top1'), false);
    assert.deepEqual(warnings, []);
  });

  it('a resume in the same process and second still sorts the new file after the old ones', () => {
    const dir = runDir();
    const now = Date.now();
    const later = `events.out.tfevents.${Math.floor(now / 1000) + 5}.${os.hostname()}.${process.pid}.9`;
    fs.writeFileSync(nodePath.join(dir, later), '');
    const next = newEventFileName(dir, now);
    assert.ok(next > later, `${next} sorts after ${later}`);
    assert.ok(newEventFileName(dir, now + 10_000) > later);
  });

  it('a failed write of the event file is told once; metrics.jsonl keeps every line', () => {
    const dir = runDir();
    appendMetrics(dir, trainLine(1, 1));
    const file = eventFiles(dir)[0] as string;
    fs.rmSync(file);
    fs.mkdirSync(file); // appending to it now fails (EISDIR)
    for (let s = 2; s <= 4; s++) appendMetrics(dir, trainLine(s, s));
    assert.deepEqual(
      readMetrics(dir).map((r) => r.step),
      [1, 2, 3, 4],
    );
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0] as string,
      /TensorBoard event file in .*: appending to it failed .*metrics\.jsonl goes on/,
    );
  });

  it('a real run and its resume (digpt pretrain, digpt resume): TensorBoard shows exactly metrics.jsonl', () => {
    const dir = nodePath.join(tmp, 'real');
    const digpt = (...args: string[]) =>
      spawnSync(process.execPath, [BIN, ...args], {
        cwd: tmp,
        encoding: 'utf8',
        env: {
          ...process.env,
          DIGPT_CACHE: nodePath.join(tmp, 'cache'),
          DIGPT_WORKSPACE: nodePath.join(tmp, 'ws'),
        },
      });
    const train = ['--data', BUILTIN_SAMPLE_DIR, '--preset', 'digpt-micro-32', '--teacher', 'pixels'];
    const small = [
      '--batch',
      '8',
      '--accum',
      '1',
      '--seed',
      '3',
      '--workers',
      '1',
      '--checkpoint-every',
      '2',
    ];
    const first = digpt('pretrain', ...train, ...small, '--steps', '4', '--out', dir);
    assert.equal(first.status, 0, first.stderr);
    const before = metricsAsScalars(dir);
    assert.deepEqual(scalarsOf(dir), before);
    assert.deepEqual(
      [...before.keys()],
      [
        'eval/knn_top1', // step 0: the random encoder
        'train/loss',
        'train/loss_gen',
        'train/loss_dis',
        'train/lr',
        'train/agreement',
        'train/img_per_s',
      ],
    );
    assert.equal(before.get('eval/knn_top1')?.[0]?.step, 0);
    // a crash after step 4's lines, before its checkpoint: the resume starts again after step 2
    fs.rmSync(nodePath.join(dir, 'checkpoints', 'step-00000004'), { recursive: true });
    // and an event file damaged on disk, which cannot be cut back: the job warns and trains on
    const damaged = nodePath.join(dir, 'events.out.tfevents.0000000001.damaged');
    fs.writeFileSync(damaged, new Uint8Array(40).fill(7));
    const resumed = digpt('resume', dir);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.equal(
      resumed.stderr.match(/TensorBoard/g)?.length,
      1,
      `one warning, for the damaged file:\n${resumed.stderr}`,
    );
    assert.match(
      resumed.stderr,
      /warning: TensorBoard event file .*0000000001\.damaged was not cut back to step 2 \(TFRecord at byte 0: the length's CRC/,
    );
    assert.deepEqual([...fs.readFileSync(damaged)], new Array(40).fill(7));
    fs.rmSync(damaged);
    const files = eventFiles(dir);
    assert.equal(files.length, 2);
    assert.deepEqual(
      readEventFile(files[0] as string).events.flatMap((e) => (e.scalars.length ? [e.step] : [])),
      [0, 1, 2],
    );
    const second = readEventFile(files[1] as string).events;
    assert.deepEqual([second[1]?.sessionStatus, second[1]?.step], [SESSION_START, 3]);
    assert.deepEqual(scalarsOf(dir), metricsAsScalars(dir));
    assert.deepEqual(
      scalarsOf(dir)
        .get('train/loss')
        ?.map((p) => p.step),
      [1, 2, 3, 4],
    );
  });
});

/** A run's metrics.jsonl as TensorBoard series (float32, as simple_value holds them). */
function metricsAsScalars(dir: string): Map<string, { step: number; value: number }[]> {
  const out = new Map<string, { step: number; value: number }[]>();
  for (const r of readMetrics(dir))
    for (const s of metricScalars(r)) {
      const list = out.get(s.tag) ?? [];
      list.push({ step: r.step as number, value: Math.fround(s.value) });
      out.set(s.tag, list);
    }
  return out;
}

/** What TensorBoard reads from a run's event files, without wall times. */
function scalarsOf(dir: string): Map<string, { step: number; value: number }[]> {
  return new Map(
    [...readRunScalars(dir)].map(([t, ps]) => [t, ps.map((p) => ({ step: p.step, value: p.value }))]),
  );
}
