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

  it('forbids host-side app/ to import tfjs, the engine beyond config and rng, or app/worker/', async () => {
    for (const [spec, file] of [
      ['@tensorflow/tfjs-core', 'app/workbench/x.ts'],
      ['../../engine/models/vit.js', 'app/cli/x.ts'],
      ['../../engine/backend.js', 'app/experiments/x.ts'],
      ['../worker/run-job.js', 'app/workbench/x.ts'],
      ['../worker/export.js', 'app/runs/x.ts'],
      ['../app/worker/entry.js', 'main/x.ts'],
      ['@tensorflow/tfjs-core', 'main/x.ts'],
    ] as const) {
      const messages = await restrictedImports(`import * as m from '${spec}';\nexport const x = m;\n`, file);
      assert.equal(messages.length, 1, `${file} importing ${spec}: ${messages.join('; ')}`);
      assert.match(messages[0] ?? '', /may not import .*tfjs/);
    }
  });

  it('lets host-side app/ import engine/config, engine/rng and engine/webgpu-adapter, and app/worker/ import the engine and tfjs', async () => {
    for (const [spec, file] of [
      ['../../engine/config.js', 'app/cli/x.ts'],
      ['../../engine/rng.js', 'app/datasets/x.ts'],
      ['../../engine/webgpu-adapter.js', 'app/jobs/x.ts'],
      ['../../engine/models/vit.js', 'app/worker/x.ts'],
      ['@tensorflow/tfjs-core', 'app/worker/x.ts'],
      ['../runs/config.js', 'app/worker/x.ts'],
    ] as const)
      assert.deepEqual(
        await restrictedImports(`import * as m from '${spec}';\nexport const x = m;\n`, file),
        [],
        `${file} importing ${spec}`,
      );
  });

  it('lets renderer/ import the API contract in app/api', async () => {
    const messages = await restrictedImports(
      "import type { Api } from '../../app/api/contract.js';\nexport type Bridge = Api;\n",
      'renderer/src/bridge.ts',
    );
    assert.deepEqual(messages, []);
  });
});
