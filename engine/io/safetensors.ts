// Reads and writes safetensors checkpoints with node:fs alone, one tensor in memory at a time.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32';

export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Absolute offset in the file of the first byte of the tensor. */
  readonly begin: number;
  /** Absolute offset in the file one past the last byte of the tensor. */
  readonly end: number;
}

export class SafetensorsError extends Error {
  readonly file: string;
  readonly key?: string;

  constructor(file: string, message: string, key?: string, options?: { cause?: unknown }) {
    super(key === undefined ? `${file}: ${message}` : `${file}: "${key}": ${message}`, options);
    this.name = 'SafetensorsError';
    this.file = file;
    if (key !== undefined) this.key = key;
  }
}

export interface TensorToWrite {
  readonly dtype: 'F32' | 'I64';
  readonly shape: readonly number[];
  /** F32 takes a Float32Array; I64 takes an Int32Array (sign-extended on write) or a BigInt64Array. */
  readonly data: Float32Array | Int32Array | BigInt64Array;
}

const ITEM_SIZE: Readonly<Record<SafetensorsDType, number>> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4 };
const SUPPORTED = Object.keys(ITEM_SIZE).join(', ');

// Same bound as the reference Rust implementation, so a corrupt length cannot make us allocate gigabytes.
const MAX_HEADER_BYTES = 100_000_000;

// Converting dtypes go through a fixed scratch buffer so the peak is the output array plus this,
// not the output plus a full-size source copy. A multiple of 8 keeps I64 elements whole per chunk.
const CHUNK_BYTES = 4 * 1024 * 1024;

// One fs.readSync/writeSync call is capped near 2 GiB on some platforms; stay well under it.
const IO_CHUNK_BYTES = 1024 * 1024 * 1024;

// Typed-array views reinterpret bytes in host order and the format is little-endian; checking once
// at load is cheaper than going through DataView for every element.
const HOST_IS_LITTLE_ENDIAN = os.endianness() === 'LE';

function requireLittleEndianHost(file: string): void {
  if (!HOST_IS_LITTLE_ENDIAN) {
    throw new SafetensorsError(
      file,
      'big-endian hosts are not supported (safetensors data is little-endian)',
    );
  }
}

/** What a stat says a path is, for messages. */
function fileKind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'a special file';
}

// A FIFO, socket or device is never read: its read would wait for a writer for good (a FIFO) or never end (a
// device such as /dev/zero), hanging the thread that loads a teacher or a checkpoint.
function requireRegularFile(file: string, st: fs.Stats): void {
  if (!st.isFile()) throw new SafetensorsError(file, `not a regular file (${fileKind(st)})`);
}

// O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer, so the fstat after the open can refuse
// it; on a regular file the flag changes nothing. A Unix socket cannot be opened at all (ENXIO).
function openNonBlocking(file: string): number {
  try {
    return fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENXIO')
      throw new SafetensorsError(file, 'not a regular file (a socket)', undefined, { cause: error });
    throw error;
  }
}

function isDType(value: unknown): value is SafetensorsDType {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ITEM_SIZE, value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const json = JSON.stringify(value);
  return json.length > 80 ? `${json.slice(0, 77)}...` : json;
}

/** Element count, or undefined when it exceeds what a double holds exactly. */
function elementCount(shape: readonly number[]): number | undefined {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

function readFully(fd: number, target: Uint8Array, position: number): number {
  let done = 0;
  while (done < target.byteLength) {
    const want = Math.min(IO_CHUNK_BYTES, target.byteLength - done);
    const got = fs.readSync(fd, target, done, want, position + done);
    if (got === 0) break;
    done += got;
  }
  return done;
}

function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) {
    const want = Math.min(IO_CHUNK_BYTES, bytes.byteLength - done);
    done += fs.writeSync(fd, bytes, done, want);
  }
}

// --- header key order ---
// JSON.parse hands back integer-like keys ("0", "12") before all others, so the header order
// that keys() promises has to be recovered from the text. The text has already passed
// JSON.parse, which lets this scanner skip every check.

function skipWhitespace(s: string, i: number): number {
  while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++;
  return i;
}

function endOfString(s: string, i: number): number {
  let j = i + 1;
  while (s[j] !== '"') j += s[j] === '\\' ? 2 : 1;
  return j + 1;
}

function endOfValue(s: string, i: number): number {
  const c = s[i];
  if (c === '"') return endOfString(s, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    let j = i;
    for (;;) {
      const d = s[j];
      if (d === '"') {
        j = endOfString(s, j);
        continue;
      }
      if (d === '{' || d === '[') depth++;
      else if (d === '}' || d === ']') depth--;
      j++;
      if (depth === 0) return j;
    }
  }
  let j = i;
  while (j < s.length && !',}] \t\n\r'.includes(s[j] ?? '')) j++;
  return j;
}

function topLevelKeys(json: string): string[] {
  const keys: string[] = [];
  let i = skipWhitespace(json, skipWhitespace(json, 0) + 1);
  if (json[i] === '}') return keys;
  for (;;) {
    const end = endOfString(json, i);
    keys.push(JSON.parse(json.slice(i, end)) as string);
    i = skipWhitespace(json, end) + 1;
    i = skipWhitespace(json, endOfValue(json, skipWhitespace(json, i)));
    if (json[i] !== ',') return keys;
    i = skipWhitespace(json, i + 1);
  }
}

// --- reading ---

function parseHeader(
  file: string,
  fd: number,
  fileSize: number,
): { metadata: Readonly<Record<string, string>>; entries: Map<string, SafetensorsEntry> } {
  if (fileSize < 8) {
    throw new SafetensorsError(file, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  const lengthBytes = new Uint8Array(8);
  readFully(fd, lengthBytes, 0);
  const headerLength64 = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  if (headerLength64 > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(
      file,
      `header length ${headerLength64} exceeds the ${MAX_HEADER_BYTES}-byte (100 MB) limit`,
    );
  }
  const headerLength = Number(headerLength64);
  if (8 + headerLength > fileSize) {
    throw new SafetensorsError(
      file,
      `truncated: header length ${headerLength} needs ${8 + headerLength} bytes but the file is ${fileSize} bytes`,
    );
  }
  const headerBytes = new Uint8Array(headerLength);
  readFully(fd, headerBytes, 8);

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch (cause) {
    throw new SafetensorsError(file, 'header is not valid UTF-8', undefined, { cause });
  }
  let header: unknown;
  try {
    header = JSON.parse(text) as unknown;
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new SafetensorsError(file, `header is not valid JSON (${reason})`, undefined, { cause });
  }
  if (!isPlainObject(header)) {
    throw new SafetensorsError(file, `header must be a JSON object, found ${describe(header)}`);
  }

  const dataStart = 8 + headerLength;
  let metadata: Readonly<Record<string, string>> = Object.freeze({});
  const entries = new Map<string, SafetensorsEntry>();
  const seen = new Set<string>();
  for (const name of topLevelKeys(text)) {
    // JSON.parse silently keeps the last of duplicated keys; refusing is safer than guessing.
    if (seen.has(name)) throw new SafetensorsError(file, 'key appears more than once in the header', name);
    seen.add(name);
    const value = header[name];
    if (name === '__metadata__') {
      metadata = parseMetadata(file, value);
      continue;
    }
    entries.set(name, parseEntry(file, name, value, dataStart, fileSize));
  }
  checkLayout(file, [...entries.values()], dataStart, fileSize);
  return { metadata, entries };
}

/** data_offsets as the header writes them (relative to the data), for messages. */
function offsetsText(e: SafetensorsEntry, dataStart: number): string {
  return `[${e.begin - dataStart}, ${e.end - dataStart}]`;
}

/**
 * The reference library's layout rule: sorted by data_offsets, the tensors tile the data exactly. Each begins where
 * the previous one ends (no overlap: two names would share bytes, and a write to one would change the other; no
 * hole: bytes that belong to no tensor), and the last one ends at the end of the file (no trailing bytes).
 */
function checkLayout(
  file: string,
  entries: readonly SafetensorsEntry[],
  dataStart: number,
  fileSize: number,
): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = dataStart;
  let previous: SafetensorsEntry | undefined;
  for (const e of sorted) {
    if (e.begin < expected) {
      // expected only moves past dataStart once a tensor was seen, so previous is set here
      const p = previous as SafetensorsEntry;
      throw new SafetensorsError(
        file,
        `data_offsets ${offsetsText(e, dataStart)} overlap those of "${p.name}" ${offsetsText(p, dataStart)}`,
        e.name,
      );
    }
    if (e.begin > expected) {
      const where = previous === undefined ? 'before the first tensor' : `after "${previous.name}"`;
      throw new SafetensorsError(
        file,
        `data_offsets ${offsetsText(e, dataStart)} leave a hole: data bytes [${expected - dataStart}, ${e.begin - dataStart}) belong to no tensor (${where})`,
        e.name,
      );
    }
    expected = e.end;
    previous = e;
  }
  if (expected < fileSize) {
    const last =
      previous === undefined
        ? 'the header (the file has no tensors)'
        : `the last tensor, "${previous.name}" ${offsetsText(previous, dataStart)}`;
    throw new SafetensorsError(
      file,
      `${fileSize - expected} trailing bytes after ${last}: the file is ${fileSize} bytes, its header and tensors account for ${expected}`,
    );
  }
}

function parseMetadata(file: string, value: unknown): Readonly<Record<string, string>> {
  if (!isPlainObject(value)) {
    throw new SafetensorsError(
      file,
      `must be an object of strings, found ${describe(value)}`,
      '__metadata__',
    );
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') {
      throw new SafetensorsError(
        file,
        `metadata value must be a string, found ${describe(v)}`,
        `__metadata__.${k}`,
      );
    }
  }
  // fromEntries defines properties, so a "__proto__" key stays data instead of swapping the prototype.
  return Object.freeze(Object.fromEntries(Object.entries(value as Record<string, string>)));
}

function parseEntry(
  file: string,
  name: string,
  value: unknown,
  dataStart: number,
  fileSize: number,
): SafetensorsEntry {
  if (!isPlainObject(value)) {
    throw new SafetensorsError(
      file,
      `entry must be an object with dtype, shape and data_offsets, found ${describe(value)}`,
      name,
    );
  }
  const { dtype, shape, data_offsets: offsets } = value;
  if (!isDType(dtype)) {
    const what =
      typeof dtype === 'string'
        ? `dtype "${dtype}" is not supported`
        : `dtype must be a string, found ${describe(dtype)}`;
    throw new SafetensorsError(file, `${what} (supported: ${SUPPORTED})`, name);
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw new SafetensorsError(
      file,
      `shape must be an array of non-negative integers, found ${describe(shape)}`,
      name,
    );
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
    throw new SafetensorsError(
      file,
      `data_offsets must be two non-negative integers [begin, end], found ${describe(offsets)}`,
      name,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) {
    throw new SafetensorsError(file, `data_offsets begin ${begin} is after end ${end}`, name);
  }
  const count = elementCount(shape);
  const expected = count === undefined ? undefined : count * ITEM_SIZE[dtype];
  if (expected === undefined || !Number.isSafeInteger(expected)) {
    throw new SafetensorsError(file, `shape [${shape.join(', ')}] is too large`, name);
  }
  if (end - begin !== expected) {
    throw new SafetensorsError(
      file,
      `byte length mismatch: shape [${shape.join(', ')}] of ${dtype} needs ${expected} bytes, data_offsets [${begin}, ${end}] give ${end - begin}`,
      name,
    );
  }
  const absoluteEnd = dataStart + end;
  if (absoluteEnd > fileSize) {
    throw new SafetensorsError(
      file,
      `truncated: tensor ends at byte ${absoluteEnd} (expected file size at least ${absoluteEnd}) but the file is ${fileSize} bytes`,
      name,
    );
  }
  return Object.freeze({
    name,
    dtype,
    shape: Object.freeze(shape.slice() as number[]),
    begin: dataStart + begin,
    end: absoluteEnd,
  });
}

// --- dtype conversion ---

let f16Table: Uint32Array | undefined;

/** Bit patterns of the float32 equal to each of the 65536 float16 values. */
function float16Table(): Uint32Array {
  if (f16Table !== undefined) return f16Table;
  const table = new Uint32Array(65536);
  const asFloat = new Float32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) {
      // Subnormal halves are normal floats; mantissa * 2^-24 is exact in float32.
      asFloat[h] = (sign ? -1 : 1) * mantissa * 2 ** -24;
    } else if (exponent === 31) {
      // Inf or NaN: keep sign and payload bits.
      table[h] = (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
    } else {
      table[h] = (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
    }
  }
  f16Table = table;
  return table;
}

// --- SafetensorsFile ---

/** Reads lazily through a file descriptor, one tensor at a time, so a file of several GB is never held twice in memory. */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly #entries: Map<string, SafetensorsEntry>;
  #fd: number | undefined;

  private constructor(
    path: string,
    fd: number,
    metadata: Readonly<Record<string, string>>,
    entries: Map<string, SafetensorsEntry>,
  ) {
    this.path = path;
    this.#fd = fd;
    this.metadata = metadata;
    this.#entries = entries;
  }

  /** Reads and validates the header only; tensor bytes are read on demand. Refuses anything but a regular file. */
  static open(path: string): SafetensorsFile {
    requireLittleEndianHost(path);
    requireRegularFile(path, fs.statSync(path));
    const fd = openNonBlocking(path);
    try {
      const st = fs.fstatSync(fd);
      // checked again on the descriptor: the name may have been swapped for a FIFO since the stat
      requireRegularFile(path, st);
      const { metadata, entries } = parseHeader(path, fd, st.size);
      return new SafetensorsFile(path, fd, metadata, entries);
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  /** Tensor names in header order. */
  keys(): string[] {
    return [...this.#entries.keys()];
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  entry(name: string): SafetensorsEntry {
    const entry = this.#entries.get(name);
    if (entry === undefined) throw new SafetensorsError(this.path, 'no such tensor in the file', name);
    return entry;
  }

  /** F32 as stored; F16, BF16, I32 and I64 converted (I64 beyond 2^24 loses precision, as any float32 would). */
  readFloat32(name: string): Float32Array {
    const entry = this.entry(name);
    const n = (entry.end - entry.begin) / ITEM_SIZE[entry.dtype];
    if (entry.dtype === 'F32') {
      const out = new Float32Array(n);
      this.#readInto(entry.name, entry.begin, new Uint8Array(out.buffer));
      return out;
    }
    const out = new Float32Array(n);
    const outBits = new Uint32Array(out.buffer);
    switch (entry.dtype) {
      case 'F16': {
        const table = float16Table();
        this.#forEachChunk(entry, (bytes, first) => {
          const src = new Uint16Array(bytes.buffer, 0, bytes.byteLength / 2);
          for (let i = 0; i < src.length; i++) outBits[first + i] = table[src[i] as number] as number;
        });
        break;
      }
      case 'BF16':
        this.#forEachChunk(entry, (bytes, first) => {
          const src = new Uint16Array(bytes.buffer, 0, bytes.byteLength / 2);
          for (let i = 0; i < src.length; i++) outBits[first + i] = (src[i] as number) << 16;
        });
        break;
      case 'I32':
        this.#forEachChunk(entry, (bytes, first) => {
          const src = new Int32Array(bytes.buffer, 0, bytes.byteLength / 4);
          for (let i = 0; i < src.length; i++) out[first + i] = src[i] as number;
        });
        break;
      case 'I64':
        this.#forEachChunk(entry, (bytes, first) => {
          const words = new Int32Array(bytes.buffer, 0, bytes.byteLength / 4);
          const unsigned = new Uint32Array(bytes.buffer, 0, bytes.byteLength / 4);
          for (let i = 0; i < words.length / 2; i++) {
            out[first + i] = (words[2 * i + 1] as number) * 4294967296 + (unsigned[2 * i] as number);
          }
        });
        break;
    }
    return out;
  }

  /** I32 as stored; I64 narrowed, refusing any value outside the int32 range rather than wrapping it. */
  readInt32(name: string): Int32Array {
    const entry = this.entry(name);
    const n = (entry.end - entry.begin) / ITEM_SIZE[entry.dtype];
    if (entry.dtype === 'I32') {
      const out = new Int32Array(n);
      this.#readInto(entry.name, entry.begin, new Uint8Array(out.buffer));
      return out;
    }
    if (entry.dtype !== 'I64') {
      throw new SafetensorsError(
        this.path,
        `dtype ${entry.dtype} cannot be read as int32 (only I32 and I64 can)`,
        name,
      );
    }
    const out = new Int32Array(n);
    this.#forEachChunk(entry, (bytes, first) => {
      const words = new Int32Array(bytes.buffer, 0, bytes.byteLength / 4);
      for (let i = 0; i < words.length / 2; i++) {
        const lo = words[2 * i] as number;
        const hi = words[2 * i + 1] as number;
        // Fits iff the high word is the sign extension of the low word.
        if (hi !== lo >> 31) {
          const value = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
          throw new SafetensorsError(
            this.path,
            `I64 value ${value} at index ${first + i} does not fit in int32`,
            name,
          );
        }
        out[first + i] = lo;
      }
    });
    return out;
  }

  close(): void {
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    fs.closeSync(fd);
  }

  #openFd(name: string): number {
    if (this.#fd === undefined) throw new SafetensorsError(this.path, 'file is closed', name);
    return this.#fd;
  }

  #readInto(name: string, position: number, target: Uint8Array): void {
    const got = readFully(this.#openFd(name), target, position);
    if (got !== target.byteLength) {
      // The size was checked at open, so this means the file shrank underneath us.
      throw new SafetensorsError(
        this.path,
        `truncated: expected ${target.byteLength} bytes at offset ${position}, read ${got}`,
        name,
      );
    }
  }

  /** Calls visit with consecutive chunks of the tensor's bytes and the index of each chunk's first element. */
  #forEachChunk(entry: SafetensorsEntry, visit: (bytes: Uint8Array, firstElement: number) => void): void {
    const itemSize = ITEM_SIZE[entry.dtype];
    const total = entry.end - entry.begin;
    // A fresh ArrayBuffer starts at offset 0, so every typed-array view over it is aligned.
    const scratch = new Uint8Array(new ArrayBuffer(Math.min(CHUNK_BYTES, total)));
    for (let done = 0; done < total; done += scratch.byteLength) {
      const chunk = scratch.subarray(0, Math.min(scratch.byteLength, total - done));
      this.#readInto(entry.name, entry.begin + done, chunk);
      visit(chunk, done / itemSize);
    }
  }
}

/** Reads every tensor: F32/F16/BF16 as Float32Array, I32/I64 as Int32Array. */
export function readSafetensors(path: string): {
  metadata: Record<string, string>;
  tensors: Map<string, { dtype: SafetensorsDType; shape: number[]; data: Float32Array | Int32Array }>;
} {
  const file = SafetensorsFile.open(path);
  try {
    const tensors = new Map<
      string,
      { dtype: SafetensorsDType; shape: number[]; data: Float32Array | Int32Array }
    >();
    for (const name of file.keys()) {
      const { dtype, shape } = file.entry(name);
      const data = dtype === 'I32' || dtype === 'I64' ? file.readInt32(name) : file.readFloat32(name);
      tensors.set(name, { dtype, shape: [...shape], data });
    }
    return { metadata: { ...file.metadata }, tensors };
  } finally {
    file.close();
  }
}

// --- writing ---

// Python's json.dumps escapes non-ASCII by default; matching it keeps our files byte-identical
// to the reference writer's.
function jsonAscii(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

// Python's sorted() orders by code point; comparing UTF-8 bytes gives the same order, UTF-16 units would not.
function compareCodePoints(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

interface PlannedTensor {
  readonly name: string;
  readonly tensor: TensorToWrite;
  readonly byteLength: number;
}

function planTensors(
  file: string,
  tensors: ReadonlyMap<string, TensorToWrite> | Readonly<Record<string, TensorToWrite>>,
): PlannedTensor[] {
  const list: [string, TensorToWrite][] =
    tensors instanceof Map ? [...(tensors as ReadonlyMap<string, TensorToWrite>)] : Object.entries(tensors);
  const planned: PlannedTensor[] = [];
  for (const [name, tensor] of list) {
    if (name === '__metadata__') throw new SafetensorsError(file, 'name is reserved for metadata', name);
    const { dtype, shape, data } = tensor;
    if (dtype !== 'F32' && dtype !== 'I64') {
      throw new SafetensorsError(
        file,
        `cannot write dtype ${describe(dtype)} (supported for writing: F32, I64)`,
        name,
      );
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new SafetensorsError(
        file,
        `shape must be an array of non-negative integers, found ${describe(shape)}`,
        name,
      );
    }
    const dataOk =
      dtype === 'F32'
        ? data instanceof Float32Array
        : data instanceof Int32Array || data instanceof BigInt64Array;
    if (!dataOk) {
      const wanted = dtype === 'F32' ? 'Float32Array' : 'Int32Array or BigInt64Array';
      const found = typeof data === 'object' && data !== null ? data.constructor.name : typeof data;
      throw new SafetensorsError(file, `${dtype} data must be a ${wanted}, found ${found}`, name);
    }
    const count = elementCount(shape);
    if (count !== data.length) {
      throw new SafetensorsError(
        file,
        `shape [${shape.join(', ')}] needs ${count ?? 'too many'} elements, data has ${data.length}`,
        name,
      );
    }
    planned.push({ name, tensor, byteLength: count * ITEM_SIZE[dtype] });
  }
  return planned.sort((a, b) => compareCodePoints(a.name, b.name));
}

function buildHeader(
  file: string,
  planned: readonly PlannedTensor[],
  metadata: Readonly<Record<string, string>> | undefined,
): Uint8Array {
  // Built by hand rather than from one object because JS objects would move integer-like names first.
  const parts: string[] = [];
  let offset = 0;
  for (const { name, tensor, byteLength } of planned) {
    const info = {
      dtype: tensor.dtype,
      shape: [...tensor.shape],
      data_offsets: [offset, offset + byteLength],
    };
    parts.push(`${jsonAscii(name)}:${jsonAscii(info)}`);
    offset += byteLength;
  }
  if (metadata !== undefined) {
    const pairs = Object.entries(metadata);
    for (const [k, v] of pairs) {
      if (typeof v !== 'string') {
        throw new SafetensorsError(
          file,
          `metadata value must be a string, found ${describe(v)}`,
          `__metadata__.${k}`,
        );
      }
    }
    // Like the reference writer: metadata last, and left out when empty.
    if (pairs.length > 0) {
      parts.push(`"__metadata__":{${pairs.map(([k, v]) => `${jsonAscii(k)}:${jsonAscii(v)}`).join(',')}}`);
    }
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Buffer.alloc(Math.ceil(json.byteLength / 8) * 8, 0x20);
  json.copy(padded);
  if (padded.byteLength > MAX_HEADER_BYTES) {
    throw new SafetensorsError(
      file,
      `header would be ${padded.byteLength} bytes, over the ${MAX_HEADER_BYTES}-byte limit readers accept`,
    );
  }
  return padded;
}

function writeTensorData(fd: number, tensor: TensorToWrite): void {
  const { data } = tensor;
  if (tensor.dtype === 'I64' && data instanceof Int32Array) {
    // Widen through a bounded scratch buffer so an I64 tensor never needs a full 8-byte-per-element copy.
    const pairs = new Int32Array(Math.min(CHUNK_BYTES / 8, data.length) * 2);
    for (let start = 0; start < data.length; start += pairs.length / 2) {
      const count = Math.min(pairs.length / 2, data.length - start);
      for (let i = 0; i < count; i++) {
        const v = data[start + i] as number;
        pairs[2 * i] = v;
        pairs[2 * i + 1] = v >> 31;
      }
      writeFully(fd, new Uint8Array(pairs.buffer, 0, count * 8));
    }
    return;
  }
  // Host and file are both little-endian, so the array's own bytes are the file's bytes.
  writeFully(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

function fsyncDirectory(dir: string): void {
  // Windows cannot open a directory as a file; NTFS makes the rename durable on its own.
  if (process.platform === 'win32') return;
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } catch (error) {
    // Some filesystems (network mounts, FUSE) reject fsync on directories; the rename already happened.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw error;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes tensors in sorted name order with the header space-padded to a multiple of 8, as the
 * Python reference writer does. Everything is validated before the first byte is written, and the
 * file is written to a temporary name and renamed into place, so a failure never leaves a
 * half-written checkpoint at `path`.
 */
export function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, TensorToWrite> | Readonly<Record<string, TensorToWrite>>,
  metadata?: Readonly<Record<string, string>>,
): void {
  requireLittleEndianHost(path);
  const planned = planTensors(path, tensors);
  const header = buildHeader(path, planned, metadata);
  const length = new Uint8Array(8);
  new DataView(length.buffer).setBigUint64(0, BigInt(header.byteLength), true);

  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  // 'wx' refuses an existing name, so two writers can never share a temp file.
  let fd: number | undefined = fs.openSync(tmp, 'wx');
  try {
    writeFully(fd, length);
    writeFully(fd, header);
    for (const { tensor } of planned) writeTensorData(fd, tensor);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, path);
  } catch (error) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // The original error is the one worth reporting.
      }
    }
    fs.rmSync(tmp, { force: true });
    throw error;
  }
  fsyncDirectory(nodePath.dirname(nodePath.resolve(path)));
}
