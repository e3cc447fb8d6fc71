// The CLI's progress output: a redrawn bar with ETA on a terminal, plain lines otherwise, JSON lines on request.
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bar, eta, formatDuration, outputMode, Progress } from '../../app/cli/progress.js';

/** A stand-in terminal stream that keeps what is written. */
function stream(isTTY: boolean): NodeJS.WriteStream & { text: string } {
  const s = {
    isTTY,
    text: '',
    write(chunk: string) {
      s.text += chunk;
      return true;
    },
  };
  return s as unknown as NodeJS.WriteStream & { text: string };
}

describe('progress', () => {
  it('formats durations, bars and ETAs', () => {
    assert.equal(formatDuration(42), '42s');
    assert.equal(formatDuration(185), '3m05s');
    assert.equal(formatDuration(3720), '1h02m');
    assert.equal(formatDuration(NaN), '?');
    assert.equal(bar(5, 10, 10), '[#####-----] 5/10');
    assert.equal(eta(10, 90, 5), 45);
    assert.ok(Number.isNaN(eta(0, 90, 5)));
  });

  it('picks the mode from the stream and the flag', () => {
    assert.equal(outputMode(false, stream(true)), 'tty');
    assert.equal(outputMode(false, stream(false)), 'plain');
    assert.equal(outputMode(true, stream(true)), 'json');
  });

  it('redraws one line on a terminal and ends it at completion', () => {
    const s = stream(true);
    const p = new Progress('tty', s);
    p.update('pretrain', 1, 2, 'loss 1.0');
    p.update('pretrain', 2, 2, 'loss 0.9');
    const clear = '\r\u001b[2K';
    const lines = s.text.split(clear).slice(1);
    assert.equal(lines[0], `pretrain [${'#'.repeat(12)}${'-'.repeat(12)}] 1/2 loss 1.0 ETA ?`);
    assert.equal(lines[1], `pretrain [${'#'.repeat(24)}] 2/2 loss 0.9 ETA 0s\n`);
  });

  it('prints plain lines and JSON lines with the ETA in seconds', () => {
    const plain = stream(false);
    new Progress('plain', plain).update('finetune', 3, 4, 'loss 2');
    assert.equal(plain.text, 'finetune [##################------] 3/4 loss 2 ETA ?\n');
    const json = stream(false);
    const p = new Progress('json', json);
    p.update('pretrain', 1, 3, '', { loss: 1.5 });
    p.note('hello');
    const lines = json.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines[0], { event: 'pretrain', done: 1, total: 3, eta_s: null, loss: 1.5 });
    assert.deepEqual(lines[1], { event: 'log', text: 'hello' });
  });
});
