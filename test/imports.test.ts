// No import cycles anywhere in the source: every static import (types included) of app/, engine/, main/, renderer/,
// bin/ and scripts/ is followed, and each strongly connected group of more than one file is reported.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FOLDERS = ['app', 'engine', 'main', 'renderer/src', 'bin', 'scripts'];

/** `import ... from './x.js'`, `import './x.js'`, `export ... from './x.js'` (not `import()`: a lazy load is no cycle). */
const STATIC_IMPORT =
  /(?:^|[\n;])\s*(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s+)?['"](\.{1,2}\/[^'"]+)['"]/g;

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (name === 'node_modules') return [];
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return /\.(ts|mts|mjs|js|svelte)$/.test(name) ? [p] : [];
  });
}

/** The file a relative specifier names (TypeScript's `.js` spelling of a `.ts` file included). */
function target(from: string, spec: string): string | undefined {
  const p = resolve(dirname(from), spec);
  return [p.replace(/\.js$/, '.ts'), p, `${p}.ts`].find((c) => existsSync(c) && statSync(c).isFile());
}

/** The import graph: file -> the files it imports. */
function importGraph(files: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const deps: string[] = [];
    for (const m of readFileSync(f, 'utf8').matchAll(STATIC_IMPORT)) {
      const t = target(f, m[1] as string);
      if (t) deps.push(t);
    }
    graph.set(f, deps);
  }
  return graph;
}

/** Groups of files that import each other, directly or around a loop (Tarjan's strongly connected components). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1) out.push(group.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

describe('import cycles', () => {
  it('finds a cycle when there is one (two files and three files around a loop)', () => {
    const g = new Map([
      ['a', ['b']],
      ['b', ['a']],
      ['c', ['d']],
      ['d', ['e']],
      ['e', ['c', 'a']],
      ['f', ['a']],
    ]);
    assert.deepEqual(
      cycles(g).map((c) => c.join(' ')),
      ['a b', 'c d e'],
    );
  });

  it('reads static imports, type imports and re-exports, not lazy import()', () => {
    const dir = join(ROOT, 'app', 'cli');
    const g = importGraph([join(dir, 'main.ts')]);
    const deps = (g.get(join(dir, 'main.ts')) ?? []).map((d) => relative(ROOT, d));
    assert.ok(deps.includes(join('app', 'cli', 'commands.ts')), deps.join(', '));
    assert.ok(!deps.includes(join('app', 'serve.ts')), 'serve is imported lazily');
  });

  it('the source has none', () => {
    const files = FOLDERS.flatMap((f) => sourceFiles(join(ROOT, f)));
    assert.ok(files.length > 100, `only ${files.length} files found`);
    const found = cycles(importGraph(files)).map((c) => c.map((f) => relative(ROOT, f)).join(' <-> '));
    assert.deepEqual(found, []);
  });
});
