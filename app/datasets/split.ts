// The seeded, stratified validation split carved out of train when a dataset brings no val split of its own.
import { Rng } from '../../engine/rng.js';

/** FNV-1a over UTF-16 code units: a stable 32-bit hash of a class name. */
function hashName(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Validation images of a class of `n`: the rounded fraction, at least one and at most n - 1 when n >= 2. */
export function valCount(n: number, fraction: number): number {
  if (fraction <= 0 || n < 2) return 0;
  return Math.min(n - 1, Math.max(1, Math.round(n * fraction)));
}

/**
 * Chooses the validation members: within each class (label -1 counts as one class) a seeded shuffle of the
 * class's members, taken in the order given (callers sort them by path or index), keeps its first
 * `valCount(n, fraction)`. Each class has its own generator, seeded from `seed` and the class's name, so a
 * class's choice does not move when other classes gain or lose files. Returns a flag per member.
 */
export function carveValidation(
  labels: ArrayLike<number>,
  classNames: readonly string[],
  fraction: number,
  seed: number,
): Uint8Array {
  const isVal = new Uint8Array(labels.length);
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i] as number;
    let members = byClass.get(l);
    if (!members) byClass.set(l, (members = []));
    members.push(i);
  }
  for (const [label, members] of byClass) {
    const k = valCount(members.length, fraction);
    if (k === 0) continue;
    const name = label < 0 ? '' : (classNames[label] ?? String(label));
    const rng = new Rng((seed ^ Math.imul(hashName(name), 0x9e3779b1)) >>> 0);
    const perm = rng.permutation(members.length);
    for (let j = 0; j < k; j++) isVal[members[perm[j] as number] as number] = 1;
  }
  return isVal;
}
