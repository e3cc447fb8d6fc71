#!/usr/bin/env node
// Launcher of the `digpt` command: registers tsx so that the TypeScript sources run without a build step.
import { register } from 'tsx/esm/api';

register();
await import('../app/cli/main.ts');
