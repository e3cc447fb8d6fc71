// `digpt serve` against hostile and broken clients: raw malformed bytes, bad frames, foreign Host names, dead sockets.
// After each, the server must still answer a page and a new WebSocket.
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { allowedHosts, cookieName, guarded, serve, type Server } from '../../app/serve.js';

const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-serve-hard-'));
process.env['DIGPT_CACHE'] = nodePath.join(tmp, 'cache');
const staticDir = nodePath.join(tmp, 'ui');
fs.mkdirSync(staticDir);
fs.writeFileSync(nodePath.join(staticDir, 'index.html'), '<!doctype html><title>ui</title>');

/** Where a test talks to: a server in a child process (survival is visible) or one in this process. */
interface Peer {
  readonly port: number;
  readonly token: string;
}

const servers: Server[] = [];
let child: ChildProcess;
/** The child server, which must never exit during the tests. */
let server: Peer;
let exited: string | null = null;

async function start(extra: { pingIntervalMs?: number } = {}): Promise<Server> {
  const s = await serve({
    port: 0,
    workspace: nodePath.join(tmp, `ws-${servers.length}`),
    staticDir,
    ...extra,
  });
  servers.push(s);
  return s;
}

before(async () => {
  child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      nodePath.join(import.meta.dirname, 'serve-process.ts'),
      nodePath.join(tmp, 'ws-child'),
      staticDir,
    ],
    { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  child.on('exit', (code, signal) => (exited = `exited with ${code ?? signal}: ${stderr}`));
  server = await new Promise<Peer>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(JSON.parse(out) as Peer);
    });
    child.on('exit', () => reject(new Error(`serve-process ${exited}`)));
  });
});
after(async () => {
  child.kill('SIGTERM');
  for (const s of servers) await s.close();
});

const host = (s: Peer): string => `127.0.0.1:${s.port}`;
const login = (s: Peer): string => `${cookieName(s.port)}=${s.token}`;

interface RawReply {
  status: number;
  head: string;
  body: string;
}

/** Sends raw bytes and reads the reply until the server closes the connection. */
function raw(port: number, bytes: string | Buffer): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(bytes));
    const chunks: Buffer[] = [];
    // a server that never answers (a handler that threw and left the socket open) reads as status 0
    sock.setTimeout(10_000, () => sock.destroy());
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const [head = '', body = ''] = text.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body });
    });
  });
}

/** A GET with the given target and headers, closing the connection after the reply. */
function get(s: Peer, target: string, headers: Record<string, string> = {}): Promise<RawReply> {
  const lines = Object.entries({ Host: host(s), ...headers, Connection: 'close' }).map(
    ([k, v]) => `${k}: ${v}`,
  );
  return raw(s.port, `GET ${target} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`);
}

function upgradeRequest(s: Peer, target: string, headers: Record<string, string> = {}): string {
  const all = {
    Host: host(s),
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    ...headers,
  };
  const lines = Object.entries(all).map(([k, v]) => `${k}: ${v}`);
  return `GET ${target} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

/** A completed handshake over a raw socket (so the test can send frames no WebSocket library would). */
function rawSocket(s: Peer): Promise<{ sock: net.Socket; frames: () => Buffer }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(s.port, '127.0.0.1', () =>
      sock.write(upgradeRequest(s, `/api?token=${s.token}`)),
    );
    let buf = Buffer.alloc(0);
    let opened = false;
    sock.on('error', reject);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (opened) return;
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`no handshake: ${head}`));
      opened = true;
      buf = buf.subarray(end + 4);
      resolve({ sock, frames: () => buf });
    });
  });
}

/** A client frame: FIN + opcode, masked unless told otherwise, with an optional false length. */
function frame(opcode: number, payload: Buffer, o: { mask?: boolean; claimedLength?: number } = {}): Buffer {
  const mask = o.mask ?? true;
  const len = o.claimedLength ?? payload.length;
  const head =
    len < 126
      ? Buffer.from([0x80 | opcode, (mask ? 0x80 : 0) | len])
      : Buffer.concat([Buffer.from([0x80 | opcode, (mask ? 0x80 : 0) | 127]), u64(len)]);
  if (!mask) return Buffer.concat([head, payload]);
  const key = randomBytes(4);
  const body = Buffer.from(payload.map((b, i) => b ^ (key[i % 4] as number)));
  return Buffer.concat([head, key, body]);
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** The code of the close frame the server sent (skipping event frames before it), once the socket is closed. */
function closeCode(conn: { sock: net.Socket; frames: () => Buffer }): Promise<number> {
  return new Promise((resolve) => {
    conn.sock.on('close', () => {
      let b = conn.frames();
      while (b.length >= 2) {
        const op = (b[0] as number) & 0x0f;
        let len = (b[1] as number) & 0x7f;
        let at = 2;
        if (len === 126) {
          len = b.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          len = Number(b.readBigUInt64BE(2));
          at = 10;
        }
        if (op === 0x8) return resolve(b.readUInt16BE(at));
        b = b.subarray(at + len);
      }
      resolve(-1);
    });
  });
}

/** A WebSocket API client (the `ws` library, as a browser would speak). */
async function client(s: Peer, o: { autoPong?: boolean } = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${s.port}/api?token=${s.token}`, { autoPong: o.autoPong ?? true });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let next = 1;
  const request = (name: string, payload: unknown) =>
    new Promise<{ ok: boolean; value?: unknown; error?: string }>((resolve) => {
      const id = next++;
      const on = (d: Buffer) => {
        const m = JSON.parse(d.toString()) as { type: string; id?: number; result: { ok: boolean } };
        if (m.type === 'response' && m.id === id) {
          ws.off('message', on);
          resolve(m.result);
        }
      };
      ws.on('message', on);
      ws.send(JSON.stringify({ type: 'request', id, name, payload }));
    });
  return { ws, request };
}

/** The server is still running and serves a page and a new WebSocket that answers a request. */
async function assertHealthy(s: Peer): Promise<void> {
  if (s === server) assert.equal(exited, null, 'the server process ended');
  const page = await fetch(`http://127.0.0.1:${s.port}/`, { headers: { cookie: login(s) } });
  assert.equal(page.status, 200);
  const c = await client(s);
  const r = await c.request('presets.list', {});
  assert.equal(r.ok, true);
  c.ws.close();
}

describe('digpt serve survives malformed requests', { timeout: 120_000 }, () => {
  it('answers every malformed request with a 4xx and keeps serving', async () => {
    const cases: [string, Record<string, string>, number][] = [
      ['//', {}, 401],
      ['http://[', {}, 400],
      ['http://127.0.0.1/', { Cookie: login(server) }, 400],
      ['*', {}, 400],
      ['/', { Cookie: `${cookieName(server.port)}=%` }, 401],
      ['/', { Cookie: 'digpt_token=%' }, 401],
      ['/%zz', { Cookie: login(server) }, 400],
      [`/%zz?token=${server.token}`, {}, 400],
      ['/%00', { Cookie: login(server) }, 400],
      ['//', { Cookie: login(server) }, 403],
    ];
    for (const [target, headers, status] of cases) {
      const r = await get(server, target, headers);
      assert.equal(r.status, status, `GET ${target} ${JSON.stringify(headers)}: ${r.head}`);
    }
    // what the parser itself rejects
    assert.equal((await raw(server.port, 'NOT HTTP AT ALL\r\n\r\n')).status, 400);
    assert.equal((await raw(server.port, 'GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n')).status, 400);
    await assertHealthy(server);
  });

  it('redirects the token to a path on this server, never to `//other-site`', async () => {
    const r = await get(server, `//evil.example/x?token=${server.token}`);
    assert.equal(r.status, 302);
    assert.match(r.head, /\r\nLocation: \/evil\.example\/x\r\n/);
  });

  it('answers malformed upgrade requests with a 4xx before any handshake', async () => {
    const cases: [string, Record<string, string>, number][] = [
      ['//', {}, 404],
      ['http://[', {}, 400],
      ['/%zz', { Cookie: login(server) }, 400],
      ['/api', { Cookie: `${cookieName(server.port)}=%` }, 401],
      ['/api', { Cookie: 'digpt_token=%' }, 401],
    ];
    for (const [target, headers, status] of cases) {
      const r = await raw(server.port, upgradeRequest(server, target, headers));
      assert.equal(r.status, status, `upgrade ${target}: ${r.head}`);
    }
    await assertHealthy(server);
  });

  it('refuses an upgrade without the token with 401, never opening the socket', async () => {
    const attempts: Record<string, string>[] = [{}, { Cookie: `${cookieName(server.port)}=wrong` }];
    for (const headers of attempts) {
      const r = await raw(server.port, upgradeRequest(server, '/api', headers));
      assert.equal(r.status, 401);
      assert.doesNotMatch(r.head, /101/);
      assert.match(r.body, /token/);
    }
    const r = await raw(server.port, upgradeRequest(server, '/api?token=wrong'));
    assert.equal(r.status, 401);
  });

  it('closes only the socket that sends an unmasked frame (1002), invalid UTF-8 (1007) or too large a frame (1009)', async () => {
    const bystander = await client(server);
    const bad: [string, Buffer, number][] = [
      ['unmasked', frame(0x1, Buffer.from('{"type":"request"}'), { mask: false }), 1002],
      ['invalid UTF-8', frame(0x1, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), 1007],
      // the header alone says 2 MiB: refused before the payload arrives
      ['over the limit', frame(0x1, Buffer.alloc(0), { claimedLength: 2 << 20 }), 1009],
    ];
    for (const [what, bytes, code] of bad) {
      const conn = await rawSocket(server);
      const closed = closeCode(conn);
      conn.sock.write(bytes);
      assert.equal(await closed, code, what);
    }
    // a real client sending a real 2 MiB message
    const big = await client(server);
    const code = await new Promise<number>((resolve) => {
      big.ws.on('close', (c) => resolve(c));
      big.ws.send('x'.repeat(2 << 20));
    });
    assert.equal(code, 1009);
    assert.equal(bystander.ws.readyState, WebSocket.OPEN);
    assert.equal((await bystander.request('presets.list', {})).ok, true);
    bystander.ws.close();
    await assertHealthy(server);
  });

  it('answers a text frame that is not JSON with an error response, keeping the socket', async () => {
    const c = await client(server);
    const reply = new Promise<string>((resolve) => c.ws.once('message', (d) => resolve(d.toString())));
    c.ws.send('not json');
    assert.match(await reply, /not a request envelope/);
    assert.equal((await c.request('presets.list', {})).ok, true);
    c.ws.close();
  });

  it('a request handler that throws costs that request a 500; the server goes on', async () => {
    const logged: string[] = [];
    const h = http.createServer(
      guarded(
        (req, res) => {
          if (req.url === '/boom') throw new Error('boom');
          res.end('fine');
        },
        (l) => logged.push(l),
      ),
    );
    await new Promise<void>((r) => h.listen(0, '127.0.0.1', () => r()));
    const port = (h.address() as AddressInfo).port;
    assert.equal((await fetch(`http://127.0.0.1:${port}/boom`)).status, 500);
    const ok = await fetch(`http://127.0.0.1:${port}/ok`);
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), 'fine');
    assert.match(logged.join(''), /GET \/boom: Error: boom/);
    await new Promise<void>((r) => {
      h.close(() => r());
      h.closeAllConnections();
    });
  });
});

describe('digpt serve checks who it talks to', { timeout: 120_000 }, () => {
  it('refuses a Host it was not started for (DNS rebinding), on pages and on the upgrade', async () => {
    const foreign = { Host: `evil.example:${server.port}`, Cookie: login(server) };
    const page = await get(server, '/', foreign);
    assert.equal(page.status, 421);
    assert.match(page.body, /does not answer to Host 'evil\.example:\d+'/);
    const up = await raw(
      server.port,
      upgradeRequest(server, `/api?token=${server.token}`, {
        ...foreign,
        Origin: `http://evil.example:${server.port}`,
      }),
    );
    assert.equal(up.status, 421);
    // the loopback names with the right port are this server; without the port, or another port, are not
    for (const name of ['localhost', '[::1]', '127.0.0.1', 'LOCALHOST'])
      assert.equal(
        (await get(server, '/', { Host: `${name}:${server.port}`, Cookie: login(server) })).status,
        200,
      );
    assert.equal((await get(server, '/', { Host: '127.0.0.1', Cookie: login(server) })).status, 421);
    assert.equal((await get(server, '/', { Host: '127.0.0.1:1', Cookie: login(server) })).status, 421);
    // a WebSocket over localhost works (its Origin matches its Host)
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/api?token=${server.token}`, {
      headers: { Host: `localhost:${server.port}`, Origin: `http://localhost:${server.port}` },
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.close();
  });

  it('allows the names of the --host it was given', () => {
    const loop = allowedHosts('127.0.0.1', 8765);
    assert.deepEqual([...loop].sort(), ['127.0.0.1:8765', '[::1]:8765', 'localhost:8765']);
    assert.deepEqual([...allowedHosts('::1', 8765)].sort(), [
      '127.0.0.1:8765',
      '[::1]:8765',
      'localhost:8765',
    ]);
    assert.deepEqual([...allowedHosts('192.168.1.5', 8765)], ['192.168.1.5:8765']);
    assert.deepEqual([...allowedHosts('box.lan', 80)].sort(), ['box.lan', 'box.lan:80']);
    const any = allowedHosts('0.0.0.0', 9000);
    for (const n of ['0.0.0.0:9000', '127.0.0.1:9000', `${os.hostname().toLowerCase()}:9000`])
      assert.ok(any.has(n), n);
    assert.ok(!any.has('evil.example:9000'));
  });

  it('names its cookie per port, so two servers keep their own logins in one browser', async () => {
    const other = await start();
    // a browser's cookie jar for 127.0.0.1: cookies are shared by every port of the host
    const jar = new Map<string, string>();
    for (const s of [server, other]) {
      const r = await fetch(`http://127.0.0.1:${s.port}/?token=${s.token}`, { redirect: 'manual' });
      assert.equal(r.status, 302);
      const set = r.headers.get('set-cookie') ?? '';
      assert.match(set, new RegExp(`^digpt_token_${s.port}=`));
      const [name = '', value = ''] = (set.split(';')[0] ?? '').split('=');
      jar.set(name, value);
    }
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    for (const s of [server, other]) {
      const page = await fetch(`http://127.0.0.1:${s.port}/`, { headers: { cookie } });
      assert.equal(page.status, 200, `server on ${s.port} still logged in`);
      const ws = new WebSocket(`ws://127.0.0.1:${s.port}/api`, { headers: { cookie } });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      ws.close();
    }
  });

  it('pings its sockets and drops the one that stops answering', async () => {
    const s = await start({ pingIntervalMs: 40 });
    const live = await client(s);
    let pings = 0;
    live.ws.on('ping', () => pings++);
    const dead = await client(s, { autoPong: false });
    const code = await new Promise<number>((resolve) => dead.ws.on('close', (c) => resolve(c)));
    assert.equal(code, 1006, 'terminated, not closed politely');
    while (pings < 3) await new Promise((r) => live.ws.once('ping', r));
    assert.equal(live.ws.readyState, WebSocket.OPEN);
    assert.equal((await live.request('presets.list', {})).ok, true);
    live.ws.close();
  });
});
