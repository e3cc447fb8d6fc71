// Pure: line colours for charts, stable per label index.

const COLORS = ['#3b6fd8', '#d8743b', '#2f9e6b', '#a94fc2', '#c2413b', '#1f9bb0', '#b7941f', '#6b7280'];

export function lineColor(i: number): string {
  return COLORS[((i % COLORS.length) + COLORS.length) % COLORS.length]!;
}

/** '#rrggbb' with an alpha, as rgba(). */
export function fade(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
