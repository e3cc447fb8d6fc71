// Pure formatting of numbers and durations for the UI.

/** 3725 -> "1h 02m", 75 -> "1m 15s", null -> "—". */
export function formatEta(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${String(m % 60).padStart(2, '0')}m`;
}

/** A metric value with 4 significant digits; tiny or huge values in exponent form. */
export function formatValue(v: number | string | null | undefined): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

/** A result entry: accuracies (…top1, …acc) as percentages, other numbers as formatValue. */
export function formatResult(key: string, v: number | string): string {
  if (typeof v === 'number' && /top\d|acc/.test(key) && v >= 0 && v <= 1) return `${(v * 100).toFixed(1)}%`;
  return formatValue(v);
}
