// Experiment plots as plain SVG strings (a line chart and a grouped bar chart), rasterised to PNG with sharp.
import sharp from 'sharp';

/** One line of a line chart. */
export interface Series {
  readonly name: string;
  /** [x, y] points in x order; non-finite y are skipped. */
  readonly points: readonly (readonly [number, number])[];
}

/** One group of bars (e.g. a row of a table) with a bar per measure. */
export interface BarGroup {
  readonly name: string;
  /** One value per measure (NaN leaves the bar out), with an optional spread drawn as a whisker. */
  readonly values: readonly { readonly value: number; readonly spread?: number }[];
}

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const W = 820;
const H = 480;
const M = { left: 70, right: 170, top: 40, bottom: 56 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Round tick values (1, 2, 5 x 10^k) covering [lo, hi], about `n` of them. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag) as number;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  return Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : String(v);
}

function frame(title: string, xLabel: string, yLabel: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${(M.left + W - M.right) / 2}" y="24" font-size="16" text-anchor="middle">${esc(title)}</text>`,
    `<text x="${(M.left + W - M.right) / 2}" y="${H - 12}" font-size="13" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="18" y="${(M.top + H - M.bottom) / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 18 ${(M.top + H - M.bottom) / 2})">${esc(yLabel)}</text>`,
  ];
}

function legend(names: readonly string[]): string[] {
  return names.flatMap((name, i) => {
    const y = M.top + 10 + i * 20;
    const x = W - M.right + 14;
    const c = PALETTE[i % PALETTE.length] as string;
    return [
      `<rect x="${x}" y="${y - 9}" width="14" height="10" fill="${c}"/>`,
      `<text x="${x + 20}" y="${y}" font-size="12">${esc(name)}</text>`,
    ];
  });
}

/** A line chart of several series on shared linear axes. */
export function lineChartSvg(o: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
}): string {
  const pts = o.series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const x0 = xs.length ? Math.min(...xs) : 0;
  const x1 = xs.length ? Math.max(...xs) : 1;
  let y0 = ys.length ? Math.min(...ys) : 0;
  let y1 = ys.length ? Math.max(...ys) : 1;
  if (y1 - y0 < 1e-9) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (x: number): number => M.left + (x1 > x0 ? ((x - x0) / (x1 - x0)) * pw : pw / 2);
  const sy = (y: number): number => M.top + ph - ((y - y0) / (y1 - y0)) * ph;
  const out = frame(o.title, o.xLabel, o.yLabel);
  for (const t of niceTicks(y0, y1)) {
    out.push(
      `<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#e5e5e5"/>`,
      `<text x="${M.left - 6}" y="${(sy(t) + 4).toFixed(1)}" font-size="11" text-anchor="end">${fmt(t)}</text>`,
    );
  }
  for (const t of niceTicks(x0, x1)) {
    out.push(
      `<line x1="${sx(t).toFixed(1)}" x2="${sx(t).toFixed(1)}" y1="${M.top + ph}" y2="${M.top + ph + 5}" stroke="#333"/>`,
      `<text x="${sx(t).toFixed(1)}" y="${M.top + ph + 18}" font-size="11" text-anchor="middle">${fmt(t)}</text>`,
    );
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  o.series.forEach((s, i) => {
    const p = s.points
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
      .map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    if (p.length)
      out.push(
        `<polyline fill="none" stroke="${PALETTE[i % PALETTE.length] as string}" stroke-width="1.6" points="${p.join(' ')}"/>`,
      );
  });
  out.push(...legend(o.series.map((s) => s.name)), '</svg>');
  return out.join('\n');
}

/** Grouped bars on [0, yMax] with the value printed above each bar and whiskers for spreads. */
export function barChartSvg(o: {
  title: string;
  yLabel: string;
  measures: readonly string[];
  groups: readonly BarGroup[];
  yMax?: number;
}): string {
  const yMax = o.yMax ?? 1;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sy = (y: number): number => M.top + ph - (Math.max(0, Math.min(yMax, y)) / yMax) * ph;
  const out = frame(o.title, '', o.yLabel);
  for (const t of niceTicks(0, yMax)) {
    out.push(
      `<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#e5e5e5"/>`,
      `<text x="${M.left - 6}" y="${(sy(t) + 4).toFixed(1)}" font-size="11" text-anchor="end">${fmt(t)}</text>`,
    );
  }
  const gw = pw / Math.max(1, o.groups.length);
  const bw = (gw * 0.8) / Math.max(1, o.measures.length);
  o.groups.forEach((g, gi) => {
    const gx = M.left + gi * gw + gw * 0.1;
    g.values.forEach((v, mi) => {
      if (!Number.isFinite(v.value)) return;
      const x = gx + mi * bw;
      const y = sy(v.value);
      const c = PALETTE[mi % PALETTE.length] as string;
      out.push(
        `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(bw * 0.9).toFixed(1)}" height="${(M.top + ph - y).toFixed(1)}" fill="${c}"/>`,
        `<text x="${(x + bw * 0.45).toFixed(1)}" y="${(y - 4).toFixed(1)}" font-size="10" text-anchor="middle">${v.value.toFixed(3)}</text>`,
      );
      if (v.spread !== undefined && v.spread > 0) {
        const cx = (x + bw * 0.45).toFixed(1);
        out.push(
          `<line x1="${cx}" x2="${cx}" y1="${sy(v.value - v.spread).toFixed(1)}" y2="${sy(v.value + v.spread).toFixed(1)}" stroke="#000"/>`,
        );
      }
    });
    out.push(
      `<text x="${(M.left + gi * gw + gw / 2).toFixed(1)}" y="${M.top + ph + 18}" font-size="12" text-anchor="middle">${esc(g.name)}</text>`,
    );
  });
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(...legend(o.measures), '</svg>');
  return out.join('\n');
}

/** Rasterises an SVG string to a PNG file. */
export async function writePng(svg: string, path: string): Promise<void> {
  await sharp(Buffer.from(svg)).png().toFile(path);
}
