// Runs the test suite: Node 20's `node --test` does not expand globs, so this finds the files itself.
// Usage: node scripts/run-tests.mjs [PATH...] [--node-test-flag...]; PATHs (files or folders) default to test/.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
const flags = args.filter((arg) => arg.startsWith('-'));
const roots = args.filter((arg) => !arg.startsWith('-'));

/** The *.test.ts files at or under `root`. */
function findTests(root) {
  if (statSync(root).isFile()) return [root];
  return readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.test.ts') && !name.split(/[\\/]/).includes('node_modules'))
    .map((name) => join(root, name));
}

const files = [...new Set((roots.length > 0 ? roots : ['test']).flatMap(findTests))].sort();
if (files.length === 0) {
  console.error(`run-tests: no *.test.ts files under ${roots.join(', ') || 'test'}`);
  process.exit(1);
}

// Files run one after another: the tfjs tests are CPU-bound and the machines have two cores.
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', ...flags, ...files],
  // a run made without --out goes to $DIGPT_WORKSPACE/runs: a temporary one, never the user's workspace
  {
    stdio: 'inherit',
    env: { ...process.env, DIGPT_WORKSPACE: mkdtempSync(join(tmpdir(), 'digpt-tests-ws-')) },
  },
);
process.exit(result.status ?? 1);
