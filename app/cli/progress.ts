// How a long job shows itself on the command line: a bar with ETA on a terminal, plain lines otherwise, JSON on request.

export type OutputMode = 'tty' | 'plain' | 'json';

export function outputMode(json: boolean, stream: NodeJS.WriteStream = process.stderr): OutputMode {
  return json ? 'json' : stream.isTTY ? 'tty' : 'plain';
}

/** "1h02m", "3m05s", "42s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** Estimated seconds left from the pace since `startedAt` over `doneSinceStart` units. */
export function eta(doneSinceStart: number, remaining: number, elapsedSeconds: number): number {
  if (doneSinceStart <= 0) return NaN;
  return (elapsedSeconds / doneSinceStart) * remaining;
}

/** A text progress bar: "[#####-----] 50/100". */
export function bar(done: number, total: number, width = 24): string {
  const f = total > 0 ? Math.min(1, done / total) : 0;
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'-'.repeat(width - n)}] ${done}/${total}`;
}

/** Prints progress of a counted job in the chosen mode; `line` is what follows the counter. */
export class Progress {
  private t0 = performance.now();
  private lastDraw = 0;
  private startDone: number | undefined;
  private label = '';

  constructor(
    private readonly mode: OutputMode,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  update(label: string, done: number, total: number, line = '', data: Record<string, unknown> = {}): void {
    if (label !== this.label) {
      // a new phase: its own clock and starting point for the ETA
      this.label = label;
      this.t0 = performance.now();
      this.startDone = done;
    }
    this.startDone ??= done;
    const elapsed = (performance.now() - this.t0) / 1000;
    const left = eta(done - this.startDone, total - done, elapsed);
    if (this.mode === 'json') {
      this.out.write(
        `${JSON.stringify({ event: label, done, total, eta_s: Number.isFinite(left) ? Math.round(left) : null, ...data })}\n`,
      );
      return;
    }
    const text = `${label} ${bar(done, total)} ${line} ETA ${formatDuration(left)}`;
    if (this.mode === 'tty') {
      const now = performance.now();
      if (done < total && now - this.lastDraw < 100) return;
      this.lastDraw = now;
      this.out.write(`\r\x1b[2K${text}${done >= total ? '\n' : ''}`);
    } else this.out.write(`${text}\n`);
  }

  /** A message that must not be overwritten by the bar. */
  note(text: string): void {
    if (this.mode === 'json') this.out.write(`${JSON.stringify({ event: 'log', text })}\n`);
    else this.out.write(`${this.mode === 'tty' ? '\r\x1b[2K' : ''}${text}\n`);
  }
}
