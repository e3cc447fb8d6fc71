// `digpt COMMAND --help`, `digpt help COMMAND` and `digpt --version` of the real CLI: usage on stdout, exit 0.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { BUDGETS_SHOWN, COMMANDS, synopsis } from '../../app/cli/commands.js';
import { BUDGET_NAMES } from '../../app/experiments/design.js';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');
const BIN = nodePath.join(ROOT, 'bin', 'digpt.js');
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-help-'));
const env = {
  ...process.env,
  DIGPT_CACHE: nodePath.join(tmp, 'cache'),
  DIGPT_WORKSPACE: nodePath.join(tmp, 'ws'),
};
const VERSION = (
  JSON.parse(fs.readFileSync(nodePath.join(ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

interface Out {
  status: number | null;
  stdout: string;
  stderr: string;
}

function digpt(args: string[]): Promise<Out> {
  return new Promise((resolve, reject) => {
    // a flag that is not refused would start the command (serve runs until killed): at most a minute
    const child = spawn(process.execPath, [BIN, ...args], { cwd: tmp, env, timeout: 60_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Runs every argument list, two processes at a time. */
async function all(list: string[][]): Promise<Out[]> {
  const out: Out[] = [];
  for (let i = 0; i < list.length; i += 2) out.push(...(await Promise.all(list.slice(i, i + 2).map(digpt))));
  return out;
}

describe('digpt help', () => {
  it("prints each command's usage for COMMAND --help, -h and help COMMAND alike: every flag, its help, its default", async () => {
    const words = COMMANDS.map((c) => c.name.split(' '));
    const [long, short, viaHelp] = [
      await all(words.map((w) => [...w, '--help'])),
      await all(words.map((w) => [...w, '-h'])),
      await all(words.map((w) => ['help', ...w])),
    ];
    COMMANDS.forEach((c, i) => {
      const r = long[i] as Out;
      assert.equal(r.status, 0, `${c.name} --help: ${r.stderr}`);
      assert.ok(r.stdout.startsWith(`usage: digpt ${c.name}`), `${c.name}: ${r.stdout}`);
      assert.match(r.stdout, new RegExp(c.summary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      for (const [name, f] of Object.entries(c.flags)) {
        const line = r.stdout.split('\n').find((l) => l.trimStart().startsWith(`--${name}`));
        assert.ok(line?.includes(f.help), `${c.name}: --${name}`);
        const dflt = f.default ?? f.shown;
        if (dflt !== undefined)
          assert.ok(line?.includes(`(default: ${dflt})`), `${c.name}: --${name} default`);
      }
      assert.equal((short[i] as Out).stdout, r.stdout, `${c.name} -h`);
      assert.equal((viaHelp[i] as Out).stdout, r.stdout, `help ${c.name}`);
      assert.equal((viaHelp[i] as Out).status, 0);
    });
    const pretrain = long[COMMANDS.findIndex((c) => c.name === 'pretrain')] as Out;
    assert.match(pretrain.stdout, /--batch N +images per micro-batch \(default: 32\)/);
    assert.match(pretrain.stdout, /--workers 1\|2\|auto .*\(default: auto\)/);
  });

  it('shows the budgets the experiments have (the table stays free of the experiments module)', () => {
    assert.deepEqual([...BUDGETS_SHOWN], [...BUDGET_NAMES]);
  });

  it("keeps bench's own usage (engine/bench) for digpt bench --help and digpt help bench", async () => {
    const [a, b] = await all([
      ['bench', '--help'],
      ['help', 'bench'],
    ]);
    for (const r of [a, b] as Out[]) {
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^usage: digpt bench \[--preset NAME\] \[--batch N\]/);
      assert.match(r.stdout, /--pipeline \[DIR\]/);
    }
  });

  it('lists every command in the top-level usage from the same table; --version and -V print the version', async () => {
    const [top, help, version, v, none] = await all([['--help'], ['help'], ['--version'], ['-V'], []]);
    assert.equal(top?.status, 0);
    assert.equal(help?.stdout, top?.stdout);
    for (const c of COMMANDS) assert.ok(top?.stdout.includes(synopsis(c).join('\n')), c.name);
    for (const r of [version, v]) {
      assert.equal(r?.status, 0);
      assert.equal(r?.stdout, `digpt ${VERSION}\n`);
    }
    // no command at all is a usage error
    assert.equal(none?.status, 2);
    assert.match(none?.stderr ?? '', /^usage: digpt <command>/);
  });
});
