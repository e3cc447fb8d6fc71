// Uploads of dropped folders through a real `digpt serve` WebSocket: the renderer's own uploader (chunks, order,
// progress) against the server's checks; a 50 MB image, 2,000 photos, refusals, and the staging folder's lifetime.
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { WebSocket } from 'ws';
import {
  UPLOAD_CHUNK_BYTES,
  type RequestName,
  type RequestOf,
  type ResponseOf,
  type WorkbenchApi,
} from '../../app/api/contract.js';
import { serve, type Server } from '../../app/serve.js';
import { Uploads } from '../../app/workbench/uploads.js';
import {
  formatProgress,
  toBase64,
  uploadFolder,
  type DroppedFile,
  type UploadProgress,
} from '../../renderer/src/features/datasets/uploader.js';

const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-serve-up-'));
process.env['DIGPT_CACHE'] = nodePath.join(tmp, 'cache');
const workspace = nodePath.join(tmp, 'ws');
const uploadsDir = nodePath.join(workspace, 'uploads');
let server: Server;
let api: WorkbenchApi & { ws: WebSocket; raw(name: string, payload: unknown): Promise<Raw> };

interface Raw {
  ok: boolean;
  value?: unknown;
  error?: string;
}

/** The API over a node `ws` client speaking the real envelopes (what the page's bridge sends). */
async function connect(s: Server): Promise<typeof api> {
  const ws = new WebSocket(`ws://127.0.0.1:${s.port}/api?token=${s.token}`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const pending = new Map<number, (r: Raw) => void>();
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as { type: string; id?: number; result?: Raw };
    if (m.type === 'response' && m.id !== undefined) pending.get(m.id)?.(m.result as Raw);
  });
  let next = 1;
  const raw = (name: string, payload: unknown) =>
    new Promise<Raw>((resolve) => {
      const id = next++;
      pending.set(id, (r) => {
        pending.delete(id);
        resolve(r);
      });
      ws.send(JSON.stringify({ type: 'request', id, name, payload }));
    });
  return {
    ws,
    raw,
    async request<N extends RequestName>(name: N, payload: RequestOf<N>): Promise<ResponseOf<N>> {
      const r = await raw(name, payload);
      if (!r.ok) throw new Error(r.error);
      return r.value as ResponseOf<N>;
    },
    on: () => () => undefined,
  };
}

before(async () => {
  server = await serve({ port: 0, workspace, staticDir: tmp });
  api = await connect(server);
});
after(async () => {
  api.ws.close();
  await server.close();
});

/** A file on disk as the page's drop gives it: path, size, slices read on demand. */
function diskFile(root: string, rel: string): DroppedFile {
  const full = nodePath.join(root, rel);
  return {
    path: rel,
    size: fs.statSync(full).size,
    read: async (start, end) => {
      const fh = await fs.promises.open(full);
      try {
        const b = Buffer.alloc(end - start);
        await fh.read(b, 0, b.length, start);
        return b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;
      } finally {
        await fh.close();
      }
    },
  };
}

function sha256(path: string): string {
  return createHash('sha256').update(fs.readFileSync(path)).digest('hex');
}

const tinyPng = (v: number) =>
  sharp({ create: { width: 8, height: 8, channels: 3, background: { r: v, g: v, b: v } } })
    .png()
    .toBuffer();

/** What is in the uploads folder apart from finished datasets: staging folders of uploads in progress. */
const staging = () =>
  fs.existsSync(uploadsDir) ? fs.readdirSync(uploadsDir).filter((n) => n.startsWith('.')) : [];

describe('uploads through digpt serve', () => {
  it('uploads a folder with a 50 MB image byte for byte, reporting progress, and registers it', async () => {
    const src = nodePath.join(tmp, 'big');
    fs.mkdirSync(nodePath.join(src, 'huge'), { recursive: true });
    fs.mkdirSync(nodePath.join(src, 'small'), { recursive: true });
    // noise does not compress: a 4096 x 4352 RGB PNG is over 50 MiB
    const noise = Buffer.alloc(4096 * 4352 * 3);
    for (let i = 0; i < noise.length; i += 4)
      noise.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 3)) >>> 0, i);
    await sharp(noise, { raw: { width: 4096, height: 4352, channels: 3 } })
      .png({ compressionLevel: 0, adaptiveFiltering: false })
      .toFile(nodePath.join(src, 'huge', 'photo.png'));
    fs.writeFileSync(nodePath.join(src, 'small', 'a.png'), await tinyPng(10));
    fs.writeFileSync(nodePath.join(src, 'huge', 'empty.txt'), '');
    const bigSize = fs.statSync(nodePath.join(src, 'huge', 'photo.png')).size;
    assert.ok(bigSize > 50 * 1024 ** 2, `${bigSize} bytes`);

    const files = ['huge/photo.png', 'small/a.png', 'huge/empty.txt'].map((p) => diskFile(src, p));
    const seen: UploadProgress[] = [];
    const d = await uploadFolder(api, 'big', files, (p) => seen.push(p));
    assert.equal(d.path, nodePath.join(uploadsDir, 'big'));
    assert.equal(d.images, 2);
    for (const rel of ['huge/photo.png', 'small/a.png', 'huge/empty.txt'])
      assert.equal(sha256(nodePath.join(d.path, rel)), sha256(nodePath.join(src, rel)), rel);
    const total = files.reduce((a, f) => a + f.size, 0);
    assert.deepEqual(seen[0], { files: 3, filesDone: 0, bytes: total, bytesDone: 0 });
    assert.deepEqual(seen.at(-1), { files: 3, filesDone: 3, bytes: total, bytesDone: total });
    // a report per chunk: the bar moves while the big file is on its way
    const chunks = Math.ceil(bigSize / UPLOAD_CHUNK_BYTES);
    assert.ok(seen.length >= chunks, `${seen.length} progress reports for ${chunks} chunks`);
    for (let i = 1; i < seen.length; i++)
      assert.ok((seen[i]?.bytesDone ?? 0) >= (seen[i - 1]?.bytesDone ?? 0), 'progress never goes back');
    assert.deepEqual(staging(), []);
    fs.rmSync(src, { recursive: true });
  });

  it('uploads a folder of 2,000 photos and registers them all', async () => {
    const src = nodePath.join(tmp, 'phone');
    const rels: string[] = [];
    for (const [cls, v] of [
      ['cats', 40],
      ['dogs', 200],
    ] as const) {
      fs.mkdirSync(nodePath.join(src, cls), { recursive: true });
      const png = await tinyPng(v);
      for (let i = 0; i < 1000; i++) {
        const rel = `${cls}/IMG_${String(i).padStart(4, '0')}.png`;
        fs.writeFileSync(nodePath.join(src, rel), png);
        rels.push(rel);
      }
    }
    let last: UploadProgress | null = null;
    const d = await uploadFolder(
      api,
      'phone',
      rels.map((r) => diskFile(src, r)),
      (p) => (last = p),
    );
    assert.equal(d.images, 2000);
    assert.deepEqual(d.classes, ['cats', 'dogs']);
    assert.equal(fs.readdirSync(nodePath.join(d.path, 'dogs')).length, 1000);
    assert.equal((last as UploadProgress | null)?.filesDone, 2000);
    assert.deepEqual(staging(), []);
  });

  it('refuses uploads and chunks over the limits with an error naming the file, before writing; the server lives', async () => {
    // declared up front: refused before a byte is sent
    const many = await api.raw('datasets.uploadBegin', { name: 'x', files: 300_000 });
    assert.match(
      many.error ?? '',
      /300000 files; digpt serve takes at most 200000 per upload; type its path/,
    );
    const heavy = await api.raw('datasets.uploadBegin', { name: 'x', bytes: 9 * 1024 ** 3 });
    assert.match(heavy.error ?? '', /holds 9216\.0 MB; digpt serve takes at most 8192\.0 MB/);

    const { uploadId } = await api.request('datasets.uploadBegin', { name: 'refusals' });
    const chunk = (path: string, size: number, offset: number, data: Buffer) =>
      api.raw('datasets.uploadFile', { uploadId, path, size, offset, data: data.toString('base64') });
    const huge = await chunk('raw/scan.tif', 2 * 1024 ** 3, 0, Buffer.alloc(10));
    assert.match(
      huge.error ?? '',
      /'raw\/scan\.tif': the file is 2048\.0 MB; digpt serve takes files up to 1024\.0 MB/,
    );
    // a chunk larger than the protocol's (still under the 1 MiB frame limit): refused by the contract
    const fat = await chunk('a.png', 700 * 1024, 0, Buffer.alloc(600 * 1024));
    assert.match(fat.error ?? '', /^datasets\.uploadFile: data: /);
    const past = await chunk('a.png', 4, 0, Buffer.from('12345'));
    assert.match(past.error ?? '', /'a\.png': the chunk at byte 0 ends at 5, past the file's 4 bytes/);
    assert.equal((await chunk('a.png', 8, 0, Buffer.from('1234'))).ok, true);
    const gap = await chunk('a.png', 8, 6, Buffer.from('78'));
    assert.match(gap.error ?? '', /'a\.png': expected the chunk at byte 4, got one at 6/);
    const escape = await chunk('../../etc/x', 1, 0, Buffer.from('1'));
    assert.match(escape.error ?? '', /upload path '\.\.\/\.\.\/etc\/x' is not a plain relative path/);
    const notB64 = await api.raw('datasets.uploadFile', {
      uploadId,
      path: 'b',
      size: 1,
      offset: 0,
      data: '!!',
    });
    assert.match(notB64.error ?? '', /^datasets\.uploadFile: data: /);
    const early = await api.raw('datasets.uploadEnd', { uploadId });
    assert.match(early.error ?? '', /the upload is not complete: 'a\.png' \(4 of 8 bytes\)/);
    // nothing of the refused files was written; the accepted half of a.png sits in staging until the abort
    const [stage] = staging();
    assert.ok(stage);
    assert.deepEqual(fs.readdirSync(nodePath.join(uploadsDir, stage, 'data')), []);
    assert.deepEqual(
      fs
        .readdirSync(nodePath.join(uploadsDir, stage, 'parts'))
        .map((p) => fs.statSync(nodePath.join(uploadsDir, stage, 'parts', p)).size),
      [4],
    );
    assert.equal((await api.raw('datasets.uploadAbort', { uploadId })).ok, true);
    assert.deepEqual(staging(), []);
    const after = await api.raw('datasets.uploadFile', {
      uploadId,
      path: 'a.png',
      size: 8,
      offset: 4,
      data: 'AA==',
    });
    assert.match(after.error ?? '', /no upload \w+ in progress/);
    // the same socket still works, and nothing was registered
    const list = (await api.request('datasets.list', {})).map((d) => d.name);
    assert.ok(!list.includes('refusals'));
  });

  it('aborts the upload when the page fails midway, and the next upload of the name works', async () => {
    const src = nodePath.join(tmp, 'flaky');
    fs.mkdirSync(nodePath.join(src, 'a'), { recursive: true });
    fs.writeFileSync(nodePath.join(src, 'a', '1.png'), await tinyPng(1));
    const good = diskFile(src, 'a/1.png');
    const broken: DroppedFile = { path: 'a/2.png', size: 10, read: async () => new ArrayBuffer(3) };
    await assert.rejects(
      uploadFolder(api, 'flaky', [good, broken]),
      /a\/2\.png changed while it was being uploaded/,
    );
    assert.deepEqual(staging(), []);
    const d = await uploadFolder(api, 'flaky', [good]);
    assert.equal(d.path, nodePath.join(uploadsDir, 'flaky'));
  });
});

describe('Uploads (the staging area)', () => {
  const root = nodePath.join(tmp, 'unit');
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  it('counts files and bytes across the upload against the limits', async () => {
    const u = new Uploads(root, { maxFiles: 2, maxBytes: 10, maxFileBytes: 6 });
    const id = u.begin('limits');
    assert.deepEqual(await u.file(id, 'a', 6, 0, b64('123456')), { received: 6 });
    await assert.rejects(
      u.file(id, 'b', 7, 0, b64('1')),
      /'b': the file is 7 bytes; digpt serve takes files up to 6 bytes/,
    );
    await assert.rejects(u.file(id, 'b', 5, 0, b64('1')), /'b': with this file the upload would hold/);
    assert.deepEqual(await u.file(id, 'b', 4, 0, b64('12')), { received: 2 });
    await assert.rejects(u.file(id, 'c', 0, 0, ''), /'c': the upload already has 2 files/);
    await assert.rejects(u.file(id, 'a', 6, 0, b64('1')), /'a': the file was already uploaded/);
    assert.deepEqual(await u.file(id, 'b', 4, 2, b64('34')), { received: 4 });
    const dir = await u.end(id);
    assert.equal(fs.readFileSync(nodePath.join(dir, 'a'), 'utf8'), '123456');
    assert.equal(fs.readFileSync(nodePath.join(dir, 'b'), 'utf8'), '1234');
    u.close();
  });

  it('refuses a file and a folder of the same name, and an upload without files', async () => {
    const u = new Uploads(root);
    const id = u.begin('clash');
    await u.file(id, 'x', 1, 0, b64('1'));
    await assert.rejects(
      u.file(id, 'x/y', 1, 0, b64('1')),
      /'x\/y': a file of the upload has the name of one of its folders/,
    );
    const empty = u.begin('empty');
    await assert.rejects(u.end(empty), /the dropped folder had no files/);
    u.close();
    assert.deepEqual(
      fs.readdirSync(root).filter((n) => n.startsWith('.')),
      [],
    );
  });

  it('deletes an upload that goes idle, and stale staging folders of a dead process', async () => {
    const u = new Uploads(root, { idleMs: 30 });
    const id = u.begin('forgotten');
    await u.file(id, 'half', 10, 0, b64('12345'));
    while (fs.readdirSync(root).some((n) => n.startsWith('.incoming-')))
      await new Promise((r) => setTimeout(r, 10));
    await assert.rejects(u.file(id, 'half', 10, 5, b64('67890')), /no upload \w+ in progress/);
    // left behind by a process that died: removed when idle for longer than idleMs, kept while fresh
    const old = nodePath.join(root, '.incoming-dead');
    const fresh = nodePath.join(root, '.incoming-alive');
    for (const d of [old, fresh]) fs.mkdirSync(nodePath.join(d, 'parts'), { recursive: true });
    const past = new Date(Date.now() - 3_600_000);
    fs.utimesSync(nodePath.join(old, 'parts'), past, past);
    fs.utimesSync(old, past, past);
    new Uploads(root, { idleMs: 60_000 }).close();
    assert.ok(!fs.existsSync(old));
    assert.ok(fs.existsSync(fresh));
  });

  it('says how far an upload is in files and megabytes', () => {
    const p = { files: 2000, filesDone: 120, bytes: 430 * 1024 ** 2, bytesDone: 35.2 * 1024 ** 2 };
    assert.equal(formatProgress('phone', p), 'uploading phone: 120/2000 files, 35.2/430.0 MB');
  });

  it('base64 of every length matches Node', () => {
    for (const n of [0, 1, 2, 3, 0x2000 - 1, 0x2000, 0x2000 + 1, 100_000]) {
      const b = Buffer.from(Array.from({ length: n }, (_, i) => (i * 131) & 255));
      assert.equal(toBase64(new Uint8Array(b)), b.toString('base64'), `${n} bytes`);
    }
  });
});
