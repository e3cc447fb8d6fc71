// A `digpt serve` in a child process for tests that must see whether the server survives: an exception that would
// end a real server ends this process too (in the test's own process node:test would catch it).
// Usage: node --import tsx test/app/serve-process.ts WORKSPACE STATIC_DIR; prints one JSON line {port, token}.
import { serve } from '../../app/serve.js';

const [workspace, staticDir] = process.argv.slice(2);
if (!workspace || !staticDir) throw new Error('usage: serve-process.ts WORKSPACE STATIC_DIR');
const s = await serve({ port: 0, workspace, staticDir });
process.stdout.write(`${JSON.stringify({ port: s.port, token: s.token })}\n`);
process.once('SIGTERM', () => void s.close().then(() => process.exit(0)));
