// The window's security policy (main/security.ts): CSP, webPreferences, navigation, new windows, sender check.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CONTENT_SECURITY_POLICY,
  createSenderCheck,
  isNavigationAllowed,
  isPermissionAllowed,
  secureWebPreferences,
  windowOpenPolicy,
  withCsp,
} from '../../main/security.js';

const APP_URL = 'app://workbench/index.html';

describe('Content-Security-Policy', () => {
  it('allows only our own scripts, styles (inline too), images (data: too) and connections; no plugins, base, forms or framing', () => {
    const directives = Object.fromEntries(
      CONTENT_SECURITY_POLICY.split(';').map((d) => {
        const [name, ...values] = d.trim().split(/\s+/);
        return [name, values];
      }),
    );
    assert.deepEqual(directives, {
      'default-src': ["'self'"],
      'script-src': ["'self'"],
      'style-src': ["'self'", "'unsafe-inline'"],
      'img-src': ["'self'", 'data:'],
      'connect-src': ["'self'"],
      'object-src': ["'none'"],
      'base-uri': ["'none'"],
      'form-action': ["'none'"],
      'frame-ancestors': ["'none'"],
    });
    assert.doesNotMatch(CONTENT_SECURITY_POLICY, /unsafe-eval|\*/);
  });

  it('is set on every response, replacing one the response had', () => {
    assert.deepEqual(withCsp(undefined), { 'Content-Security-Policy': [CONTENT_SECURITY_POLICY] });
    assert.deepEqual(
      withCsp({ 'content-security-policy': ['default-src *'], 'Content-Type': ['text/html'] }),
      { 'Content-Type': ['text/html'], 'Content-Security-Policy': [CONTENT_SECURITY_POLICY] },
    );
  });
});

describe('window', () => {
  it('is sandboxed, context-isolated, without Node, with web security', () => {
    const prefs = secureWebPreferences('/app/dist/main/preload.cjs');
    assert.equal(prefs.preload, '/app/dist/main/preload.cjs');
    assert.equal(prefs.contextIsolation, true);
    assert.equal(prefs.sandbox, true);
    assert.equal(prefs.nodeIntegration, false);
    assert.equal(prefs.nodeIntegrationInSubFrames, false);
    assert.equal(prefs.nodeIntegrationInWorker, false);
    assert.equal(prefs.webSecurity, true);
    assert.equal(prefs.allowRunningInsecureContent, false);
    assert.equal(prefs.webviewTag, false);
  });

  it('navigates only to its own page', () => {
    assert.equal(isNavigationAllowed(APP_URL, APP_URL), true);
    assert.equal(isNavigationAllowed(`${APP_URL}#/runs/run-1`, APP_URL), true);
    assert.equal(isNavigationAllowed(`${APP_URL}?view=datasets`, APP_URL), true);
    for (const url of [
      'https://example.com/',
      'http://localhost:5173/',
      'file:///home/u/Pictures/cat.png', // a file dropped outside the drop zone
      'file:///home/u/digpt/dist/renderer/index.html', // the page itself, but not over app://
      'app://workbench/other.html',
      'app://workbench/index.html.evil',
      'app://workbench.evil/index.html',
      'app://evil/index.html',
      'javascript:alert(1)',
      'data:text/html,<script>1</script>',
      'not a url',
    ]) {
      assert.equal(isNavigationAllowed(url, APP_URL), false, url);
    }
  });

  it('grants clipboard writes only', () => {
    assert.equal(isPermissionAllowed('clipboard-sanitized-write'), true);
    for (const p of [
      'media',
      'geolocation',
      'notifications',
      'openExternal',
      'fileSystem',
      'clipboard-read',
    ]) {
      assert.equal(isPermissionAllowed(p), false, p);
    }
  });

  it('opens no new windows', () => {
    assert.deepEqual(windowOpenPolicy(), { action: 'deny' });
  });
});

describe('sender check', () => {
  const check = createSenderCheck(() => 3, APP_URL);
  it("accepts the window's own page only", () => {
    assert.equal(check({ senderId: 3, frameUrl: APP_URL }), true);
    assert.equal(check({ senderId: 4, frameUrl: APP_URL }), false);
    assert.equal(check({ senderId: 3, frameUrl: `${APP_URL}#/runs` }), true);
    assert.equal(check({ senderId: 3, frameUrl: 'https://example.com/' }), false);
    assert.equal(check({ senderId: 3, frameUrl: 'file:///opt/digpt/dist/renderer/index.html' }), false);
    assert.equal(check({ senderId: 3, frameUrl: 'app://other/index.html' }), false);
    assert.equal(check({ senderId: 3, frameUrl: undefined }), false);
  });
  it('accepts nothing without a window', () => {
    assert.equal(createSenderCheck(() => null, APP_URL)({ senderId: 3, frameUrl: APP_URL }), false);
  });
});
