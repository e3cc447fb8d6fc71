// `digpt serve`: the workbench UI and API over HTTP + WebSocket on loopback, behind a random token (as Jupyter does).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as nodePath from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { RequestEnvelope } from './api/contract.js';
import { Workbench } from './workbench/index.js';

export interface ServeOptions {
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  readonly workspace: string;
  /** The folder of run folders to list and launch into (`digpt serve --logdir`); default WORKSPACE/runs. */
  readonly runsDir?: string;
  /** The built renderer (index.html and assets). */
  readonly staticDir?: string;
  /** Fixed token (tests); random otherwise. */
  readonly token?: string;
}

export interface Server {
  readonly url: string;
  readonly token: string;
  readonly port: number;
  readonly workbench: Workbench;
  close(): Promise<void>;
}

const COOKIE = 'digpt_token';
export const DEFAULT_STATIC_DIR = nodePath.resolve(import.meta.dirname, '..', 'dist', 'renderer');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookieToken(req: http.IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, v] = part.trim().split('=');
    if (k === COOKIE && v) return decodeURIComponent(v);
  }
  return undefined;
}

/** The token a request carries, in its query or its cookie. */
function presented(req: http.IncomingMessage): string | undefined {
  const url = new URL(req.url ?? '/', 'http://x');
  return url.searchParams.get('token') ?? cookieToken(req);
}

export async function serve(o: ServeOptions): Promise<Server> {
  const host = o.host ?? '127.0.0.1';
  const token = o.token ?? randomBytes(24).toString('hex');
  const staticDir = o.staticDir ?? DEFAULT_STATIC_DIR;
  const workbench = new Workbench({
    workspace: o.workspace,
    ...(o.runsDir !== undefined ? { runsDir: o.runsDir } : {}),
    restrictPaths: true,
  });
  const ok = (req: http.IncomingMessage): boolean => {
    const t = presented(req);
    return t !== undefined && same(t, token);
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const common = {
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Content-Security-Policy': CSP,
    };
    if (!ok(req)) {
      res.writeHead(401, { ...common, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('digpt serve: open the URL with the token that `digpt serve` printed (…/?token=…).\n');
      return;
    }
    if (url.searchParams.has('token')) {
      // the token moves into a cookie, and out of the address bar and history
      res.writeHead(302, {
        ...common,
        'Set-Cookie': `${COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
        Location: url.pathname,
      });
      res.end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, common);
      res.end();
      return;
    }
    const rel = decodeURIComponent(url.pathname === '/' ? '/index.html' : url.pathname);
    const file = nodePath.resolve(staticDir, `.${rel}`);
    if (!file.startsWith(staticDir + nodePath.sep)) {
      res.writeHead(403, common);
      res.end();
      return;
    }
    if (!fs.existsSync(staticDir)) {
      res.writeHead(503, { ...common, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`digpt serve: the UI is not built (${staticDir}); run \`npm run build:renderer\`.\n`);
      return;
    }
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, common);
      res.end();
      return;
    }
    res.writeHead(200, {
      ...common,
      'Content-Type': TYPES[nodePath.extname(file)] ?? 'application/octet-stream',
    });
    fs.createReadStream(file).pipe(res);
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
  const clients = new Set<WebSocket>();
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const origin = req.headers.origin;
    // a page on another origin must not drive the workbench, even with the cookie
    const sameOrigin = origin === undefined || origin === `http://${req.headers.host ?? ''}`;
    if (url.pathname !== '/api' || !sameOrigin) {
      socket.write('HTTP/1.1 403 Forbidden\r\n\r\n');
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (!ok(req)) {
        ws.close(4401, 'token missing or wrong');
        return;
      }
      clients.add(ws);
      ws.on('close', () => clients.delete(ws));
      ws.on('message', (data) => {
        let env: { id: number; name: string; payload: unknown };
        try {
          env = RequestEnvelope.parse(JSON.parse(data.toString()));
        } catch {
          ws.send(
            JSON.stringify({
              type: 'response',
              id: -1,
              result: { ok: false, error: 'not a request envelope' },
            }),
          );
          return;
        }
        void workbench.handle(env.name, env.payload).then((result) => {
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'response', id: env.id, result }));
        });
      });
    });
  });
  const off = workbench.on((name, payload) => {
    const msg = JSON.stringify({ type: 'event', name, payload });
    for (const c of clients) if (c.readyState === c.OPEN) c.send(msg);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/?token=${token}`,
    token,
    port,
    workbench,
    close: async () => {
      off();
      for (const c of clients) c.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
      await workbench.close();
    },
  };
}
