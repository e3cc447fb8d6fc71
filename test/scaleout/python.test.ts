// The trainer's own tests (scaleout/tests, Python unittest) run from npm test: spawned with Debian's python3-torch
// (scripts/setup.sh installs it), their one-line JSON summary read back. Nothing may fail, error or be skipped.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../app/runs-helpers.js';
import { PYTHON } from './python-helpers.js';

describe('scaleout/tests (digpt_torch)', () => {
  it('every Python test passes: parity on 1 and 2 DDP ranks, the draws, hand-over, kill -9 of a rank, SIGTERM', () => {
    const r = spawnSync(PYTHON, [nodePath.join(ROOT, 'scaleout', 'tests', 'run_all.py')], {
      cwd: nodePath.join(ROOT, 'scaleout'),
      encoding: 'utf8',
      timeout: 600_000,
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    assert.equal(r.error, undefined, `could not start ${PYTHON}: ${String(r.error)} (run scripts/setup.sh)`);
    const last = r.stdout.trim().split('\n').at(-1) ?? '';
    let summary: { tests: number; failures: string[]; errors: string[]; skipped: number; seconds: number };
    try {
      summary = JSON.parse(last) as typeof summary;
    } catch {
      assert.fail(
        `no JSON summary from run_all.py (exit ${r.status}):\n${r.stdout}\n${r.stderr.slice(-4000)}`,
      );
    }
    const detail = `${JSON.stringify(summary, null, 1)}\n${r.stderr.slice(-6000)}`;
    assert.deepEqual([summary.failures, summary.errors, summary.skipped], [[], [], 0], detail);
    assert.ok(summary.tests >= 20, `only ${summary.tests} tests ran\n${detail}`);
    assert.equal(r.status, 0, detail);
  });
});
