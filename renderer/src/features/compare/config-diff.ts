// Pure: the difference between run configs (runs.config), flattened to dotted keys.

/** { a: { b: 1 }, c: [1, 2] } -> { 'a.b': '1', c: '[1,2]' }; arrays stay whole (a list is one setting). */
export function flattenConfig(
  value: unknown,
  prefix = '',
  out: Record<string, string> = {},
): Record<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0 && prefix) out[prefix] = '{}';
    for (const [k, v] of entries) flattenConfig(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = value === undefined ? '' : typeof value === 'string' ? value : JSON.stringify(value);
  }
  return out;
}

export interface DiffRow {
  readonly key: string;
  /** One value per config; null where a config lacks the key. */
  readonly values: readonly (string | null)[];
  readonly differs: boolean;
}

/** Every key of the configs, sorted; `differs` when the values are not all equal (a missing key differs). */
export function configDiff(configs: readonly unknown[]): DiffRow[] {
  const flat = configs.map((c) => flattenConfig(c));
  const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))].sort();
  return keys.map((key) => {
    const values = flat.map((f) => (Object.hasOwn(f, key) ? f[key]! : null));
    return { key, values, differs: values.some((v) => v !== values[0]) };
  });
}
