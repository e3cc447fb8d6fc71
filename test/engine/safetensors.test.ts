// Tests the safetensors reader/writer against real files: round trips, decoding, validation, atomic writes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  readSafetensors,
  SafetensorsError,
  SafetensorsFile,
  writeSafetensors,
  type TensorToWrite,
} from '../../engine/io/safetensors.js';

const PARITY_DIR = fileURLToPath(new URL('../../../shared/parity/', import.meta.url));

let dir = '';
let counter = 0;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'safetensors-test-'));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function freshPath(label: string): string {
  counter += 1;
  return path.join(dir, `${counter}-${label}.safetensors`);
}

/** Builds a file byte by byte, so tests can produce headers and data our writer never would. */
function rawFile(
  label: string,
  header: string | object,
  data: Uint8Array = new Uint8Array(0),
  lengthOverride?: bigint,
): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(lengthOverride ?? BigInt(json.byteLength));
  const p = freshPath(label);
  fs.writeFileSync(p, Buffer.concat([length, json, data]));
  return p;
}

function u16le(values: readonly number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(v, i * 2));
  return b;
}

function i64le(values: readonly bigint[]): Uint8Array {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeBigInt64LE(v, i * 8));
  return b;
}

function headerOf(p: string): { length: number; text: string } {
  const bytes = fs.readFileSync(p);
  const length = Number(bytes.readBigUInt64LE(0));
  return { length, text: bytes.subarray(8, 8 + length).toString('utf8') };
}

/** Asserts that fn throws a SafetensorsError whose message names the file, the key and matches every pattern. */
function assertFails(
  fn: () => unknown,
  file: string,
  key: string | undefined,
  ...patterns: RegExp[]
): SafetensorsError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof SafetensorsError, `expected a SafetensorsError, got ${String(caught)}`);
  assert.equal(caught.file, file);
  assert.ok(caught.message.includes(file), `message should name the file: ${caught.message}`);
  assert.equal(caught.key, key);
  if (key !== undefined)
    assert.ok(caught.message.includes(key), `message should name the key "${key}": ${caught.message}`);
  for (const pattern of patterns) assert.match(caught.message, pattern);
  return caught;
}

function openFails(p: string, key: string | undefined, ...patterns: RegExp[]): SafetensorsError {
  return assertFails(() => SafetensorsFile.open(p), p, key, ...patterns);
}

describe('round trip', () => {
  test('F32 and I64 tensors with metadata', () => {
    const p = freshPath('roundtrip');
    const weights = Float32Array.from([1.5, -2.25, 0, 3.4028234663852886e38, -1e-45, Number.NaN]);
    const order = Int32Array.from([0, -1, 2147483647, -2147483648]);
    const big = BigInt64Array.from([5n, -6n]);
    writeSafetensors(
      p,
      {
        'w.weight': { dtype: 'F32', shape: [2, 3], data: weights },
        'input.order': { dtype: 'I64', shape: [2, 2], data: order },
        'input.big': { dtype: 'I64', shape: [2], data: big },
      },
      { kind: 'test', config: '{"a": 1}', unicode: 'naïve ✓' },
    );

    const { metadata, tensors } = readSafetensors(p);
    assert.deepEqual(metadata, { kind: 'test', config: '{"a": 1}', unicode: 'naïve ✓' });
    assert.deepEqual([...tensors.keys()], ['input.big', 'input.order', 'w.weight']);
    assert.deepEqual(tensors.get('w.weight'), { dtype: 'F32', shape: [2, 3], data: weights });
    assert.deepEqual(tensors.get('input.order'), { dtype: 'I64', shape: [2, 2], data: order });
    assert.deepEqual(tensors.get('input.big'), { dtype: 'I64', shape: [2], data: Int32Array.from([5, -6]) });

    const file = SafetensorsFile.open(p);
    try {
      assert.equal(file.path, p);
      assert.ok(file.has('w.weight'));
      assert.ok(!file.has('missing'));
      const { length } = headerOf(p);
      // Sorted order puts input.big (16 bytes) first, then input.order (32 bytes), then w.weight.
      assert.deepEqual(file.entry('input.big'), {
        name: 'input.big',
        dtype: 'I64',
        shape: [2],
        begin: 8 + length,
        end: 8 + length + 16,
      });
      assert.deepEqual(file.entry('w.weight'), {
        name: 'w.weight',
        dtype: 'F32',
        shape: [2, 3],
        begin: 8 + length + 48,
        end: 8 + length + 72,
      });
      assert.equal(file.entry('w.weight').end, fs.statSync(p).size);
      assert.deepEqual(file.readFloat32('input.order'), Float32Array.from([0, -1, 2147483647, -2147483648]));
      // The raw bytes are sign-extended 64-bit values.
      const raw = fs.readFileSync(p).subarray(file.entry('input.order').begin, file.entry('input.order').end);
      assert.deepEqual(
        [...new BigInt64Array(Uint8Array.from(raw).buffer)],
        [0n, -1n, 2147483647n, -2147483648n],
      );
    } finally {
      file.close();
    }
  });

  test('a Map is accepted and written in sorted order, not insertion order', () => {
    const p = freshPath('map');
    const tensors = new Map<string, TensorToWrite>([
      ['b', { dtype: 'F32', shape: [1], data: Float32Array.from([2]) }],
      ['10', { dtype: 'F32', shape: [1], data: Float32Array.from([10]) }],
      ['a', { dtype: 'F32', shape: [1], data: Float32Array.from([1]) }],
      ['2', { dtype: 'F32', shape: [1], data: Float32Array.from([3]) }],
    ]);
    writeSafetensors(p, tensors);
    const file = SafetensorsFile.open(p);
    try {
      assert.deepEqual(file.keys(), ['10', '2', 'a', 'b']);
      assert.deepEqual(file.metadata, {});
      assert.deepEqual(file.readFloat32('2'), Float32Array.from([3]));
    } finally {
      file.close();
    }
  });

  test('a scalar and zero-size tensors', () => {
    const p = freshPath('scalar');
    writeSafetensors(p, {
      loss: { dtype: 'F32', shape: [], data: Float32Array.from([0.125]) },
      empty: { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
      none: { dtype: 'I64', shape: [0], data: new Int32Array(0) },
    });
    const file = SafetensorsFile.open(p);
    try {
      assert.deepEqual(file.entry('loss').shape, []);
      assert.deepEqual(file.readFloat32('loss'), Float32Array.from([0.125]));
      const empty = file.entry('empty');
      assert.deepEqual(empty.shape, [0, 3]);
      assert.equal(empty.begin, empty.end);
      assert.equal(file.readFloat32('empty').length, 0);
      assert.equal(file.readInt32('none').length, 0);
      assert.equal(file.readFloat32('none').length, 0);
    } finally {
      file.close();
    }
  });

  test('tensors larger than one read chunk', () => {
    // 3M elements cross the reader's 4 MB conversion chunks and the writer's I64 widening chunks.
    const n = 3_000_000;
    const ints = new Int32Array(n);
    for (let i = 0; i < n; i++) ints[i] = (i % 2 === 0 ? 1 : -1) * i;
    const p = freshPath('large');
    writeSafetensors(p, { ids: { dtype: 'I64', shape: [n], data: ints } });
    const file = SafetensorsFile.open(p);
    try {
      assert.deepEqual(file.readInt32('ids'), ints);
      const asFloat = file.readFloat32('ids');
      assert.equal(asFloat[n - 1], -(n - 1));
      assert.equal(asFloat[1_234_567], -1_234_567);
    } finally {
      file.close();
    }

    const halves = new Array<number>(n);
    for (let i = 0; i < n; i++) halves[i] = i % 3 === 0 ? 0x3c00 : 0xc000; // 1, -2
    const h = rawFile(
      'large-f16',
      { x: { dtype: 'F16', shape: [n], data_offsets: [0, 2 * n] } },
      u16le(halves),
    );
    const f16 = SafetensorsFile.open(h);
    try {
      const x = f16.readFloat32('x');
      assert.equal(x.length, n);
      for (const i of [0, 1, 2, 3, 2_097_151, 2_097_152, 2_097_153, n - 1])
        assert.equal(x[i], i % 3 === 0 ? 1 : -2, `index ${i}`);
    } finally {
      f16.close();
    }
  });
});

describe('header layout', () => {
  test('padded with spaces to a multiple of 8, metadata last, compact JSON', () => {
    for (const name of ['a', 'ab', 'abc', 'abcd', 'abcde', 'abcdef', 'abcdefg', 'abcdefgh']) {
      const p = freshPath('pad');
      writeSafetensors(p, { [name]: { dtype: 'F32', shape: [1], data: Float32Array.from([1]) } }, { k: 'v' });
      const { length, text } = headerOf(p);
      assert.equal(length % 8, 0, `header of ${JSON.stringify(text)}`);
      const trimmed = text.trimEnd();
      assert.ok(length - Buffer.byteLength(trimmed) < 8);
      assert.match(text.slice(trimmed.length), /^ *$/);
      assert.equal(
        trimmed,
        `{"${name}":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"k":"v"}}`,
      );
    }
  });

  test('non-ASCII is escaped as the Python reference writer does', () => {
    const p = freshPath('ascii');
    writeSafetensors(p, { é: { dtype: 'F32', shape: [], data: Float32Array.from([1]) } }, { note: '✓' });
    assert.equal(
      headerOf(p).text.trimEnd(),
      '{"\\u00e9":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"__metadata__":{"note":"\\u2713"}}',
    );
    const { metadata, tensors } = readSafetensors(p);
    assert.deepEqual(metadata, { note: '✓' });
    assert.deepEqual([...tensors.keys()], ['é']);
  });

  test('keys() follows the header text, including integer-like names', () => {
    const p = rawFile(
      'order',
      '{"z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}, "__metadata__" : {"a":"b"},\n' +
        ' "1" : {"dtype":"I32","shape":[1],"data_offsets":[4,8]},"a\\"b":{"dtype":"F32","shape":[],"data_offsets":[8,12]}}   ',
      new Uint8Array(12),
    );
    const file = SafetensorsFile.open(p);
    try {
      assert.deepEqual(file.keys(), ['z', '1', 'a"b']);
      assert.deepEqual(file.metadata, { a: 'b' });
    } finally {
      file.close();
    }
  });
});

describe('dtype decoding', () => {
  test('F16: normals, subnormals, infinities, NaN, signed zeros', () => {
    const cases: [number, number][] = [
      [0x3c00, 1],
      [0xc000, -2],
      [0x3555, 0.333251953125],
      [0x7bff, 65504],
      [0x0400, 2 ** -14], // smallest normal
      [0x0001, 2 ** -24], // smallest subnormal
      [0x03ff, 1023 * 2 ** -24], // largest subnormal
      [0x8001, -(2 ** -24)],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
      [0x0000, 0],
      [0x8000, -0],
    ];
    const bits = [...cases.map(([h]) => h), 0x7e00, 0xfe01];
    const p = rawFile(
      'f16',
      { h: { dtype: 'F16', shape: [bits.length], data_offsets: [0, bits.length * 2] } },
      u16le(bits),
    );
    const file = SafetensorsFile.open(p);
    try {
      const out = file.readFloat32('h');
      cases.forEach(([h, expected], i) =>
        assert.ok(Object.is(out[i], expected), `0x${h.toString(16)} -> ${out[i]}, expected ${expected}`),
      );
      assert.ok(Number.isNaN(out[cases.length]));
      assert.ok(Number.isNaN(out[cases.length + 1]));
      assert.throws(() => file.readInt32('h'), SafetensorsError);
    } finally {
      file.close();
    }
  });

  test('BF16: the top 16 bits of a float32', () => {
    const cases: [number, number][] = [
      [0x3f80, 1],
      [0xc040, -3],
      [0x4049, 3.140625],
      [0x7f7f, 3.3895313892515355e38], // largest finite
      [0x0080, 2 ** -126], // smallest normal
      [0x0001, 2 ** -133], // smallest subnormal
      [0x7f80, Infinity],
      [0xff80, -Infinity],
      [0x0000, 0],
      [0x8000, -0],
    ];
    const bits = [...cases.map(([h]) => h), 0x7fc0];
    const p = rawFile(
      'bf16',
      { b: { dtype: 'BF16', shape: [bits.length], data_offsets: [0, bits.length * 2] } },
      u16le(bits),
    );
    const { tensors } = readSafetensors(p);
    const out = tensors.get('b')?.data;
    assert.ok(out instanceof Float32Array);
    cases.forEach(([h, expected], i) =>
      assert.ok(Object.is(out[i], expected), `0x${h.toString(16)} -> ${out[i]}, expected ${expected}`),
    );
    assert.ok(Number.isNaN(out[cases.length]));
  });

  test('I32 and I64 read as int32 and float32; out-of-range I64 refused by name', () => {
    const i32 = Buffer.alloc(12);
    [7, -8, 2147483647].forEach((v, i) => i32.writeInt32LE(v, i * 4));
    const i64 = i64le([3n, -4n, 2n ** 31n, -(2n ** 31n) - 1n]);
    const p = rawFile(
      'ints',
      {
        small: { dtype: 'I32', shape: [3], data_offsets: [0, 12] },
        wide: { dtype: 'I64', shape: [2, 2], data_offsets: [12, 44] },
      },
      Buffer.concat([i32, i64]),
    );
    const file = SafetensorsFile.open(p);
    try {
      assert.deepEqual(file.readInt32('small'), Int32Array.from([7, -8, 2147483647]));
      assert.deepEqual(file.readFloat32('small'), Float32Array.from([7, -8, 2147483648]));
      assert.deepEqual(file.readFloat32('wide'), Float32Array.from([3, -4, 2147483648, -2147483649]));
      assertFails(() => file.readInt32('wide'), p, 'wide', /2147483648/, /index 2/, /does not fit in int32/);
    } finally {
      file.close();
    }
  });
});

describe('validation', () => {
  const f32 = (offsets: unknown = [0, 4], shape: unknown = [1]): object => ({
    x: { dtype: 'F32', shape, data_offsets: offsets },
  });

  test('file shorter than 8 bytes', () => {
    const p = freshPath('short');
    fs.writeFileSync(p, Buffer.from([1, 2, 3, 4, 5]));
    openFails(p, undefined, /5 bytes/, /shorter than/);
  });

  test('header length larger than the file', () => {
    openFails(rawFile('hdr-long', '{}', new Uint8Array(0), 64n), undefined, /truncated/, /72/, /10 bytes/);
  });

  test('header length above 100 MB', () => {
    openFails(rawFile('hdr-huge', '{}', new Uint8Array(0), 200_000_000n), undefined, /200000000/, /100 MB/);
    openFails(rawFile('hdr-u64', '{}', new Uint8Array(0), 2n ** 63n), undefined, /100 MB/);
  });

  test('header not UTF-8, not JSON, not an object', () => {
    const p = freshPath('utf8');
    const bad = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(4n);
    fs.writeFileSync(p, Buffer.concat([len, bad]));
    openFails(p, undefined, /UTF-8/);
    openFails(rawFile('json', '{"x": '), undefined, /not valid JSON/);
    openFails(rawFile('empty-header', ''), undefined, /not valid JSON/);
    openFails(rawFile('array', '[1, 2]'), undefined, /must be a JSON object/);
    openFails(rawFile('null', 'null'), undefined, /must be a JSON object/);
  });

  test('entries that are not objects, and duplicate keys', () => {
    openFails(rawFile('entry', { x: 3 }), 'x', /must be an object/);
    const dup =
      '{"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}';
    openFails(rawFile('dup', dup, new Uint8Array(4)), 'x', /more than once/);
  });

  test('unknown or unsupported dtype', () => {
    for (const dtype of ['F64', 'U8', 'BOOL', 'f32']) {
      openFails(
        rawFile(`dtype-${dtype}`, { x: { dtype, shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
        'x',
        new RegExp(`"${dtype}" is not supported`),
        /F32, F16, BF16, I64, I32/,
      );
    }
    openFails(
      rawFile('dtype-missing', { x: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      'x',
      /dtype must be a string, found missing/,
    );
  });

  test('shape not an array of non-negative integers', () => {
    for (const shape of [3, [-1], [1.5], ['2'], null, [2 ** 53]]) {
      openFails(
        rawFile('shape', f32([0, 4], shape), new Uint8Array(4)),
        'x',
        /shape must be an array of non-negative integers/,
      );
    }
  });

  test('data_offsets not two ordered integers', () => {
    for (const offsets of [[0], [0, 4, 8], [0.5, 4], [-4, 0], '0,4', null]) {
      openFails(
        rawFile('offsets', f32(offsets), new Uint8Array(4)),
        'x',
        /data_offsets must be two non-negative integers/,
      );
    }
    openFails(
      rawFile('offsets-missing', { x: { dtype: 'F32', shape: [1] } }, new Uint8Array(4)),
      'x',
      /data_offsets .* found missing/,
    );
    openFails(rawFile('offsets-order', f32([8, 4]), new Uint8Array(8)), 'x', /begin 8 is after end 4/);
  });

  test('byte length differs from shape times item size', () => {
    openFails(rawFile('bytes', f32([0, 8], [3]), new Uint8Array(8)), 'x', /needs 12 bytes/, /give 8/);
    openFails(
      rawFile('bytes-i64', { ids: { dtype: 'I64', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)),
      'ids',
      /I64 needs 16 bytes/,
    );
  });

  test('metadata that is not an object of strings', () => {
    openFails(
      rawFile('meta-num', { __metadata__: { kind: 'x', epochs: 3 } }),
      '__metadata__.epochs',
      /must be a string, found 3/,
    );
    openFails(rawFile('meta-arr', { __metadata__: ['a'] }), '__metadata__', /must be an object of strings/);
  });

  test('truncation is detected at open, before any tensor is read', () => {
    const header = {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
    };
    const p = rawFile('trunc', header, new Uint8Array(20));
    const headerLength = Buffer.byteLength(JSON.stringify(header));
    const fileSize = 8 + headerLength + 20;
    openFails(p, 'b', /truncated/, new RegExp(`${8 + headerLength + 24}`), new RegExp(`${fileSize} bytes`));

    // A whole written file cut short by one byte.
    const q = freshPath('cut');
    writeSafetensors(q, { w: { dtype: 'F32', shape: [4], data: new Float32Array(4) } });
    fs.truncateSync(q, fs.statSync(q).size - 1);
    openFails(q, 'w', /truncated/);
  });

  test('overlapping data_offsets are refused, naming both tensors', () => {
    // b reuses a's last 4 bytes: a write through one name would change the other
    const overlap = {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    };
    openFails(rawFile('overlap', overlap, new Uint8Array(12)), 'b', /overlap/, /"a" \[0, 8\]/, /\[4, 12\]/);
    // two names for the very same bytes
    const alias = {
      w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      v: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
    };
    openFails(rawFile('alias', alias, new Uint8Array(4)), 'v', /overlap/, /"w" \[0, 4\]/);
    // an empty tensor inside another one's range, as the reference library refuses it too
    const inside = {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] },
    };
    openFails(rawFile('empty-inside', inside, new Uint8Array(8)), 'e', /overlap/, /"a"/);
  });

  test('holes between tensors and before the first are refused', () => {
    const hole = {
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
    };
    openFails(rawFile('hole', hole, new Uint8Array(12)), 'b', /hole/, /\[4, 8\)/, /after "a"/);
    const first = { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
    openFails(rawFile('hole-first', first, new Uint8Array(8)), 'a', /hole/, /\[0, 4\)/, /before the first/);
  });

  test('bytes after the last tensor are refused', () => {
    const header = {
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
    };
    const p = rawFile('trailing', header, new Uint8Array(11));
    const size = fs.statSync(p).size;
    openFails(p, undefined, /3 trailing bytes/, /"b" \[4, 8\]/, new RegExp(`file is ${size} bytes`));
    // a header without tensors followed by data
    openFails(
      rawFile('trailing-none', { __metadata__: { k: 'v' } }, new Uint8Array(2)),
      undefined,
      /2 trailing bytes/,
      /no tensors/,
    );
    // a whole written file with one byte appended
    const q = freshPath('appended');
    writeSafetensors(q, { w: { dtype: 'F32', shape: [2], data: new Float32Array(2) } });
    fs.appendFileSync(q, Buffer.from([0]));
    openFails(q, undefined, /1 trailing bytes/, /"w"/);
  });

  test('tensors that tile the data in any header order, empty ones included, open', () => {
    // header order differs from data order; zero-size tensors sit at a boundary and at the end
    const header = {
      z: { dtype: 'F32', shape: [0], data_offsets: [12, 12] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
      e: { dtype: 'F32', shape: [0, 3], data_offsets: [4, 4] },
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
    };
    const data = new Uint8Array(new Float32Array([1, 2, 3]).buffer);
    const file = SafetensorsFile.open(rawFile('tiled', header, data));
    try {
      assert.deepEqual(file.keys(), ['z', 'b', 'e', 'a']);
      assert.deepEqual([...file.readFloat32('b')], [2, 3]);
      assert.equal(file.readFloat32('e').length, 0);
    } finally {
      file.close();
    }
  });

  test('a FIFO, a socket and a device are refused without being read', async () => {
    // each would hang or never end a read: the open must not wait for a writer, nor read /dev/zero forever
    const fifo = freshPath('fifo');
    execFileSync('mkfifo', [fifo]);
    openFails(fifo, undefined, /not a regular file \(a FIFO\)/);
    const sock = freshPath('sock');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      openFails(sock, undefined, /not a regular file \(a socket\)/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    const dev = freshPath('dev');
    fs.symlinkSync('/dev/zero', dev);
    openFails(dev, undefined, /not a regular file \(a character device\)/);
    openFails(dir, undefined, /not a regular file \(a folder\)/);
  });

  test('missing key and wrong read dtype name the key', () => {
    const p = freshPath('missing');
    writeSafetensors(p, { w: { dtype: 'F32', shape: [1], data: new Float32Array(1) } });
    const file = SafetensorsFile.open(p);
    try {
      assertFails(() => file.entry('nope'), p, 'nope', /no such tensor/);
      assertFails(() => file.readFloat32('nope'), p, 'nope', /no such tensor/);
      assertFails(() => file.readInt32('w'), p, 'w', /F32 cannot be read as int32/);
    } finally {
      file.close();
    }
    assertFails(() => file.readFloat32('w'), p, 'w', /closed/);
    file.close(); // a second close is harmless
  });

  test('the writer refuses bad input before creating anything', () => {
    const p = freshPath('writer-errors');
    const bad: [Record<string, TensorToWrite>, string, RegExp][] = [
      [
        { w: { dtype: 'F32', shape: [2, 3], data: new Float32Array(5) } },
        'w',
        /needs 6 elements, data has 5/,
      ],
      [{ w: { dtype: 'F32', shape: [2], data: new Int32Array(2) } }, 'w', /Float32Array, found Int32Array/],
      [
        { w: { dtype: 'I64', shape: [2], data: new Float32Array(2) } },
        'w',
        /Int32Array or BigInt64Array, found Float32Array/,
      ],
      [
        { w: { dtype: 'F16' as 'F32', shape: [2], data: new Float32Array(2) } },
        'w',
        /cannot write dtype "F16"/,
      ],
      [{ w: { dtype: 'F32', shape: [-2], data: new Float32Array(2) } }, 'w', /non-negative integers/],
      [{ __metadata__: { dtype: 'F32', shape: [], data: new Float32Array(1) } }, '__metadata__', /reserved/],
    ];
    for (const [tensors, key, pattern] of bad)
      assertFails(() => writeSafetensors(p, tensors), p, key, pattern);
    const notString = { n: 3 } as unknown as Record<string, string>;
    assertFails(() => writeSafetensors(p, {}, notString), p, '__metadata__.n', /must be a string/);
    assert.ok(!fs.existsSync(p));
    assert.deepEqual(
      fs.readdirSync(dir).filter((f) => f.includes('.tmp-')),
      [],
    );
  });
});

describe('atomic write', () => {
  test('overwriting leaves only the new file, no temp files', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'atomic-'));
    const p = path.join(sub, 'ckpt.safetensors');
    writeSafetensors(p, { w: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } }, { step: '1' });
    writeSafetensors(
      p,
      { w: { dtype: 'F32', shape: [3], data: Float32Array.from([3, 4, 5]) } },
      { step: '2' },
    );
    assert.deepEqual(fs.readdirSync(sub), ['ckpt.safetensors']);
    const { metadata, tensors } = readSafetensors(p);
    assert.deepEqual(metadata, { step: '2' });
    assert.deepEqual(tensors.get('w')?.data, Float32Array.from([3, 4, 5]));
  });

  test('a write that throws leaves the previous file byte-identical', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'atomic-'));
    const p = path.join(sub, 'ckpt.safetensors');
    writeSafetensors(p, { w: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } });
    const before = fs.readFileSync(p);
    assertFails(
      () => writeSafetensors(p, { w: { dtype: 'F32', shape: [4], data: Float32Array.from([9, 9, 9]) } }),
      p,
      'w',
      /needs 4 elements, data has 3/,
    );
    assert.ok(fs.readFileSync(p).equals(before));
    assert.deepEqual(fs.readdirSync(sub), ['ckpt.safetensors']);
  });

  test('a failure after the temp file was written removes it', () => {
    // Renaming a file over a non-empty directory fails only at the last step, after all bytes are written.
    const sub = fs.mkdtempSync(path.join(dir, 'atomic-'));
    const target = path.join(sub, 'ckpt.safetensors');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'keep'), 'x');
    assert.throws(() =>
      writeSafetensors(target, { w: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }),
    );
    assert.deepEqual(fs.readdirSync(sub), ['ckpt.safetensors']);
    assert.deepEqual(fs.readdirSync(target), ['keep']);
  });
});

describe('parity files from the Python reference writer', () => {
  const vit = path.join(PARITY_DIR, 'vit-gap-tiny.safetensors');
  const digpt = path.join(PARITY_DIR, 'digpt-2x2-tiny.safetensors');

  test('every reference file, the built-in teacher and our own exports pass the layout checks', () => {
    const teacher = fileURLToPath(
      new URL('../../app/teachers/fashion-vit-micro.safetensors', import.meta.url),
    );
    const files = [
      ...fs
        .readdirSync(PARITY_DIR)
        .filter((f) => f.endsWith('.safetensors'))
        .map((f) => path.join(PARITY_DIR, f)),
      teacher,
    ];
    assert.ok(files.length >= 7, files.join(', '));
    for (const f of files) SafetensorsFile.open(f).close();
  });

  test('vit-gap-tiny: shapes and metadata', () => {
    const file = SafetensorsFile.open(vit);
    try {
      assert.equal(file.metadata.kind, 'vit_classifier');
      assert.equal(JSON.parse(file.metadata.config ?? '').img_size, 32);
      assert.deepEqual(file.entry('input.images_nchw').shape, [3, 3, 32, 32]);
      assert.deepEqual(file.entry('output.logits').shape, [3, 10]);
      const images = file.readFloat32('input.images_nchw');
      assert.equal(images.length, 3 * 3 * 32 * 32);
      assert.ok(images.every(Number.isFinite));
    } finally {
      file.close();
    }
  });

  test('read then written again is byte-identical to the reference writer', () => {
    for (const source of [vit, digpt]) {
      const { metadata, tensors } = readSafetensors(source);
      const copy = freshPath('copy');
      const toWrite = new Map<string, TensorToWrite>();
      for (const [name, t] of tensors) {
        assert.ok(t.dtype === 'F32' || t.dtype === 'I64', `${name} is ${t.dtype}`);
        toWrite.set(name, { dtype: t.dtype, shape: t.shape, data: t.data });
      }
      writeSafetensors(copy, toWrite, metadata);
      assert.ok(
        fs.readFileSync(copy).equals(fs.readFileSync(source)),
        `${path.basename(source)} differs after a round trip`,
      );
    }
  });
});
