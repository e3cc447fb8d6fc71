// Pure paging of the thumbnail grid: which page to request next as the grid's end scrolls into view.

export const THUMB_PAGE = 48;

/** The next { offset, limit } to request, or null when every item is loaded (total unknown: the first page). */
export function nextThumbPage(
  loaded: number,
  total: number | null,
  pageSize = THUMB_PAGE,
): { offset: number; limit: number } | null {
  if (total !== null && loaded >= total) return null;
  const limit = Math.min(200, pageSize, total === null ? pageSize : total - loaded);
  return limit > 0 ? { offset: loaded, limit } : null;
}

/** "1,234 images: 600 train, 134 val" */
export function splitSummary(splits: readonly { name: string; images: number }[]): string {
  return splits.map((s) => `${s.images.toLocaleString('en-US')} ${s.name}`).join(', ');
}

/** Rows of a per-class table: class name and images in each split (0 where a split lacks the class). */
export function classTable(
  classes: readonly string[],
  splits: readonly { name: string; perClass: Record<string, number> }[],
): { name: string; counts: number[] }[] {
  const names = classes.length > 0 ? classes : [...new Set(splits.flatMap((s) => Object.keys(s.perClass)))];
  return names.map((name) => ({
    name: name || '(unlabelled)',
    counts: splits.map((s) => s.perClass[name] ?? 0),
  }));
}
