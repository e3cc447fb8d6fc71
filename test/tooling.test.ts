// Checks that the lint configuration really enforces the layer rules of STYLE.md.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { ESLint } from 'eslint';

const cwd = fileURLToPath(new URL('..', import.meta.url));

/** The no-restricted-imports messages ESLint reports for `code` as if it were the file at `filePath`. */
async function restrictedImports(code: string, filePath: string): Promise<string[]> {
  const [result] = await new ESLint({ cwd }).lintText(code, { filePath });
  assert.ok(result, 'ESLint returned no result');
  return result.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('layer rules (eslint no-restricted-imports)', () => {
  it('forbids engine/ to import app/', async () => {
    const messages = await restrictedImports(
      "import { foo } from '../app/foo.js';\nexport const bar = foo;\n",
      'engine/x.ts',
    );
    assert.equal(messages.length, 1);
    assert.match(messages[0] ?? '', /engine\/ is tfjs \+ Node only/);
  });

  it('forbids renderer/ to import node:fs', async () => {
    const messages = await restrictedImports(
      "import { readFileSync } from 'node:fs';\nexport const read = readFileSync;\n",
      'renderer/src/x.ts',
    );
    assert.equal(messages.length, 1);
    assert.match(messages[0] ?? '', /renderer\/ talks only to the API contract/);
  });

  it('lets renderer/ import the API contract in app/api', async () => {
    const messages = await restrictedImports(
      "import type { Api } from '../../app/api/contract.js';\nexport type Bridge = Api;\n",
      'renderer/src/bridge.ts',
    );
    assert.deepEqual(messages, []);
  });
});
