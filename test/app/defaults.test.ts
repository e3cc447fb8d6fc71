// The default pretraining learns: `digpt pretrain` on the built-in sample with the built-in teacher and nothing else
// but the length given evaluates the random encoder at step 0, and its last k-NN is above that.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, describe, it } from 'node:test';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import { readRunConfig } from '../../app/runs/config.js';
import { readMetrics } from '../../app/runs/metrics.js';
import { BUILTIN_TEACHER } from '../../app/teachers/index.js';

const BIN = nodePath.resolve(import.meta.dirname, '..', '..', 'bin', 'digpt.js');
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-defaults-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the default pretraining', () => {
  it('with --teacher builtin and 200 steps, ends with a k-NN above the random encoder at step 0', () => {
    const ws = nodePath.join(tmp, 'ws');
    const r = spawnSync(
      process.execPath,
      [
        BIN,
        'pretrain',
        '--data',
        BUILTIN_SAMPLE_DIR,
        '--preset',
        'digpt-micro-32',
        '--teacher',
        'builtin',
        '--steps',
        '200',
      ],
      {
        cwd: tmp,
        encoding: 'utf8',
        env: { ...process.env, DIGPT_WORKSPACE: ws, DIGPT_CACHE: nodePath.join(tmp, 'cache') },
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const [id] = fs.readdirSync(nodePath.join(ws, 'runs'));
    const dir = nodePath.join(ws, 'runs', id as string);
    // 'builtin' is the built-in teacher's file, as the launch form means it
    const cfg = readRunConfig(dir);
    assert.ok(cfg.kind === 'pretrain' && cfg.teacher === BUILTIN_TEACHER, JSON.stringify(cfg));
    const knn = readMetrics(dir).filter((l) => typeof l['knn_top1'] === 'number');
    assert.equal(knn[0]?.step, 0, 'the curve starts from the random encoder');
    const first = knn[0]?.['knn_top1'] as number;
    const last = knn.at(-1)?.['knn_top1'] as number;
    assert.equal(knn.at(-1)?.step, 200);
    assert.ok(last > first, `k-NN top-1 ${first} at step 0, ${last} at step 200`);
  });
});
