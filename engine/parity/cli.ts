// `npm run parity [-- DIR]`: every *.safetensors vector in DIR (default ../shared/parity) against the active backend.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { describeBackend, initBackend } from '../backend.js';
import { formatCheck, runParityFile } from './run.js';

async function main(): Promise<number> {
  const dir = nodePath.resolve(
    process.argv[2] ?? nodePath.join(import.meta.dirname, '..', '..', '..', 'shared', 'parity'),
  );
  if (!fs.existsSync(dir)) {
    console.error(`parity: no such folder ${dir}`);
    return 2;
  }
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .sort();
  if (files.length === 0) {
    console.error(`parity: no *.safetensors files in ${dir}`);
    return 2;
  }
  const report = await initBackend();
  console.log(describeBackend(report));
  let failed = 0;
  let total = 0;
  for (const f of files) {
    for (const c of await runParityFile(nodePath.join(dir, f))) {
      total++;
      if (!c.pass) failed++;
      console.log(formatCheck(c));
    }
  }
  console.log(
    `parity: ${total - failed} passed, ${failed} failed (${files.length} files, backend ${report.name})`,
  );
  return failed ? 1 : 0;
}

process.exitCode = await main();
