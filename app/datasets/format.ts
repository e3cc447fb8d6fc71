// formatScan: the text `digpt datasets scan DIR` prints: layout, a table of images per class and split, sizes,
// skipped files with reasons, warnings.
import type { DatasetScan } from './types.js';

/** Display width: code points, so that `Mäntel` and `bild_①` line up (wide CJK glyphs may still not). */
function width(s: string): number {
  return [...s].length;
}

function padEnd(s: string, n: number): string {
  return s + ' '.repeat(Math.max(0, n - width(s)));
}

function padStart(s: string, n: number): string {
  return ' '.repeat(Math.max(0, n - width(s))) + s;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}

function layoutText(scan: DatasetScan): string {
  switch (scan.layout) {
    case 'idx':
      return 'IDX files';
    case 'splits':
      return `split folders (${scan.splits
        .filter((s) => s.origin === 'folder')
        .map((s) => `${s.name}/`)
        .join(', ')})`;
    case 'imagefolder':
      return 'class folders (ImageFolder)';
    case 'flat':
      return 'flat folder of images (unlabelled)';
  }
}

/** Renders a scan for people; `JSON.stringify(scan)` is the machine form. */
export function formatScan(scan: DatasetScan): string {
  const lines: string[] = [];
  lines.push(`Dataset ${scan.root}`);
  lines.push(`  layout: ${layoutText(scan)}`);
  lines.push(
    `  ${plural(scan.images, 'image')}, ${scan.classes.length > 0 ? plural(scan.classes.length, 'class', 'classes') : 'unlabelled'}`,
  );
  const v = scan.val;
  const valText =
    v.origin === 'carved'
      ? `carved from train: ${Math.round(v.fraction * 1000) / 10}% of each class, seed ${v.seed}`
      : v.origin === 'none'
        ? 'none'
        : v.origin === 'idx'
          ? 'from IDX files'
          : 'from its folder';
  lines.push(`  validation split: ${valText}`);
  if (scan.validated) lines.push('  every image was decoded to check it');

  // --- table: one row per class, one column per split ---
  if (scan.splits.length > 0) {
    const head = ['class', ...scan.splits.map((s) => s.name), 'total'];
    const rows: string[][] = scan.classes.map((cls, i) => {
      const counts = scan.splits.map((s) => s.perClass[i] ?? 0);
      return [cls, ...counts.map(String), String(counts.reduce((a, b) => a + b, 0))];
    });
    if (scan.splits.some((s) => s.unlabelled > 0)) {
      const counts = scan.splits.map((s) => s.unlabelled);
      rows.push(['(unlabelled)', ...counts.map(String), String(counts.reduce((a, b) => a + b, 0))]);
    }
    const totals = scan.splits.map((s) => s.count);
    const foot = ['total', ...totals.map(String), String(scan.images)];
    const all = [head, ...rows, foot];
    const widths = head.map((_, c) => Math.max(...all.map((r) => width(r[c] ?? ''))));
    const fmt = (r: string[]): string =>
      '  ' +
      r
        .map((cell, c) => (c === 0 ? padEnd(cell, widths[c] ?? 0) : padStart(cell, widths[c] ?? 0)))
        .join('  ');
    lines.push('');
    lines.push(fmt(head));
    lines.push('  ' + widths.map((w) => '-'.repeat(w)).join('  '));
    for (const r of rows) lines.push(fmt(r));
    lines.push('  ' + widths.map((w) => '-'.repeat(w)).join('  '));
    lines.push(fmt(foot));
  }

  // --- sizes ---
  const z = scan.sizes;
  if (z.count > 0) {
    const dims =
      z.minWidth === z.maxWidth && z.minHeight === z.maxHeight
        ? `all ${z.minWidth}x${z.minHeight}`
        : `width ${z.minWidth}-${z.maxWidth}, height ${z.minHeight}-${z.maxHeight}`;
    const chName: Record<string, string> = { '1': 'grey', '2': 'grey+alpha', '3': 'RGB', '4': 'RGBA/CMYK' };
    const channels = Object.entries(z.channels)
      .sort(([a], [b]) => Number(a) - Number(b))
      .map(([c, n]) => `${chName[c] ?? `${c} channels`} ${n}`)
      .join(', ');
    const formats = Object.entries(z.formats)
      .sort(([, a], [, b]) => b - a)
      .map(([f, n]) => `${f} ${n}`)
      .join(', ');
    lines.push('');
    lines.push(`Image sizes: ${dims}`);
    lines.push(`  channels: ${channels}`);
    lines.push(`  formats: ${formats}`);
  }

  // --- skipped files and warnings ---
  if (scan.skipped.length > 0) {
    lines.push('');
    lines.push(`Skipped ${plural(scan.skipped.length, 'file')}:`);
    const w = Math.max(...scan.skipped.map((s) => width(s.path)));
    for (const s of scan.skipped) lines.push(`  ${padEnd(s.path, w)}  ${s.reason}`);
  }
  if (scan.warnings.length > 0) {
    lines.push('');
    lines.push(`Warnings (${scan.warnings.length}):`);
    for (const w of scan.warnings) lines.push(`  - ${w.message}`);
  }
  return lines.join('\n') + '\n';
}
