// The app:// scheme (main/app-protocol.ts): which file a URL names, traversal refused, the handler's responses.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  APP_SCHEME_PRIVILEGES,
  APP_URL,
  createAppProtocolHandler,
  resolveAppTarget,
} from '../../main/app-protocol.js';
import { CONTENT_SECURITY_POLICY } from '../../main/security.js';

const base = mkdtempSync(join(tmpdir(), 'digpt-app-protocol-'));
const root = join(base, 'renderer');
mkdirSync(join(root, 'assets'), { recursive: true });
writeFileSync(join(root, 'index.html'), '<!doctype html><title>D-iGPT Workbench</title>');
writeFileSync(join(root, 'assets', 'index-abc.js'), 'console.log(1)');
writeFileSync(join(root, 'assets', 'index-abc.css'), 'body{}');
writeFileSync(join(base, 'secret.txt'), 'outside the page');
mkdirSync(join(base, 'renderer-evil'));
writeFileSync(join(base, 'renderer-evil', 'x.js'), 'evil');

after(() => rmSync(base, { recursive: true, force: true }));

describe('app:// URLs', () => {
  it('the window loads app://workbench/index.html, from a standard, secure scheme that may fetch', () => {
    assert.equal(APP_URL, 'app://workbench/index.html');
    assert.deepEqual(APP_SCHEME_PRIVILEGES, {
      scheme: 'app',
      privileges: { standard: true, secure: true, supportFetchAPI: true },
    });
  });

  it('name files under the page folder; / is index.html; query and fragment are ignored', () => {
    assert.deepEqual(resolveAppTarget(APP_URL, root), { file: join(root, 'index.html') });
    assert.deepEqual(resolveAppTarget('app://workbench/', root), { file: join(root, 'index.html') });
    assert.deepEqual(resolveAppTarget('app://workbench/assets/index-abc.js?v=1#x', root), {
      file: join(root, 'assets', 'index-abc.js'),
    });
    assert.deepEqual(resolveAppTarget('app://workbench/assets/a%20b.png', root), {
      file: join(root, 'assets', 'a b.png'),
    });
  });

  it('refuse every way out of the folder that survives the URL parser (an encoded slash)', () => {
    for (const url of [
      'app://workbench/..%2fsecret.txt',
      'app://workbench/%2E%2E%2Fsecret.txt',
      'app://workbench/assets/..%2f..%2fsecret.txt',
      // a sibling folder whose name starts with the root's
      'app://workbench/..%2frenderer-evil/x.js',
    ]) {
      assert.deepEqual(resolveAppTarget(url, root), { status: 403 }, url);
    }
  });

  it('keep dot segments inside: the URL parser resolves them against the root, as Chromium does', () => {
    for (const url of ['app://workbench/../secret.txt', 'app://workbench/%2e%2e/secret.txt']) {
      assert.deepEqual(resolveAppTarget(url, root), { file: join(root, 'secret.txt') }, url);
    }
  });

  it('refuse other hosts and schemes (404), broken encoding and NULs (400)', () => {
    assert.deepEqual(resolveAppTarget('app://evil/index.html', root), { status: 404 });
    assert.deepEqual(resolveAppTarget('file:///etc/passwd', root), { status: 404 });
    assert.deepEqual(resolveAppTarget('https://workbench/index.html', root), { status: 404 });
    assert.deepEqual(resolveAppTarget('app://workbench/%zz', root), { status: 400 });
    assert.deepEqual(resolveAppTarget('app://workbench/index.html%00.js', root), { status: 400 });
    assert.deepEqual(resolveAppTarget('not a url', root), { status: 400 });
  });
});

describe('the app:// handler', () => {
  const handle = createAppProtocolHandler(root);

  it('serves the page and its assets with their types, the CSP and nosniff', async () => {
    const page = await handle(new Request(APP_URL));
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(page.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    assert.match(await page.text(), /<title>D-iGPT Workbench<\/title>/);
    const js = await handle(new Request('app://workbench/assets/index-abc.js'));
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(await js.text(), 'console.log(1)');
    const css = await handle(new Request('app://workbench/assets/index-abc.css'));
    assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
  });

  it('answers HEAD without a body, and refuses other methods', async () => {
    const head = await handle(new Request(APP_URL, { method: 'HEAD' }));
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    const post = await handle(new Request(APP_URL, { method: 'POST', body: 'x' }));
    assert.equal(post.status, 405);
  });

  it('never reads outside the folder: traversal is 403, a missing file or a folder 404', async () => {
    const out = await handle(new Request('app://workbench/..%2fsecret.txt'));
    assert.equal(out.status, 403);
    assert.doesNotMatch(await out.text(), /outside the page/);
    const dots = await handle(new Request('app://workbench/%2e%2e/secret.txt'));
    assert.equal(dots.status, 404);
    assert.equal((await handle(new Request('app://workbench/missing.js'))).status, 404);
    assert.equal((await handle(new Request('app://workbench/assets'))).status, 404);
    assert.equal((await handle(new Request('app://evil/index.html'))).status, 404);
  });

  it('says what to run when the interface is not built', async () => {
    const r = await createAppProtocolHandler(join(base, 'not-built'))(new Request(APP_URL));
    assert.equal(r.status, 503);
    assert.match(await r.text(), /npm run build:renderer/);
  });
});
