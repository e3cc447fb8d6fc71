// Numbers from the command line: one strict reader for every numeric flag, with the bounds of app/api/run-settings.ts.
import type { z } from 'zod';
import { checkSetting, type RunSettingName } from '../api/run-settings.js';

/** An error the user made (bad flag, missing argument): printed with the usage, exit code 2. */
export class UsageError extends Error {
  /** The command whose usage to print with the message (the top-level usage when absent). */
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
  }
}

/** How a numeric flag is read: whole or real, and whose bounds it has. */
export interface NumberKind {
  readonly int: boolean;
  /** A run setting (config.json's name): the same bounds as the launch form and config.json. */
  readonly setting?: RunSettingName;
  /** Bounds of a flag that is not a run setting (e.g. --port). */
  readonly bounds?: z.ZodType<number>;
  /** Also accepts the word 'auto' (--workers). */
  readonly auto?: boolean;
  /** Said after a refusal, e.g. "takes 1, 2 or auto". */
  readonly accepts?: string;
}

// Number('0x2') is 2, Number('1e3') 1000, Number('') and Number(' 5') 0 and 5: only plain decimals are taken.
const INT = /^-?\d+$/;
const REAL = /^-?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$/i;

/** Reads `raw` (the text after the flag) as `kind` says; the error names `flag` and says why. */
export function parseNumber(raw: string, flag: string, kind: NumberKind): number | 'auto' {
  const tail = kind.accepts ? `; ${flag} ${kind.accepts}` : '';
  if (kind.auto && raw === 'auto') return 'auto';
  if (raw === '') throw new UsageError(`${flag}: needs a value, got ''${tail}`);
  if (!(kind.int ? INT : REAL).test(raw)) {
    const what = kind.int ? 'a whole number in decimal digits' : 'a decimal number';
    throw new UsageError(`${flag}: '${raw}' is not ${what}${tail}`);
  }
  const n = Number(raw);
  if (kind.int && !Number.isSafeInteger(n)) throw new UsageError(`${flag}: ${raw} is too large${tail}`);
  try {
    if (kind.setting) return checkSetting(kind.setting, n, flag) as number;
  } catch (e) {
    throw new UsageError(`${(e as Error).message}${tail}`);
  }
  if (kind.bounds) {
    const r = kind.bounds.safeParse(n);
    if (!r.success)
      throw new UsageError(`${flag}: ${r.error.issues.map((i) => i.message).join('; ')} (got ${n})${tail}`);
  }
  return n;
}

/**
 * node:util's parseArgs refuses `--batch -3` as ambiguous; joined as `--batch=-3` the number reaches parseNumber,
 * which says why it is refused.
 */
export function joinNegativeValues(args: readonly string[], valueFlags: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') return [...out, ...args.slice(i)];
    const next = args[i + 1];
    if (a.startsWith('--') && valueFlags.has(a.slice(2)) && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}
