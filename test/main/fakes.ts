// Test doubles for the main-process tests: a Workbench that implements exactly its interface, dialogs, a logger.
import { parseRequest, type EventName, type RequestName, type Result } from '../../app/api/contract.js';
import type { Dialogs, Logger, WorkbenchPort } from '../../main/ipc.js';

export class FakeWorkbench implements WorkbenchPort {
  readonly calls: { name: RequestName; payload: unknown }[] = [];
  private readonly listeners = new Set<(name: EventName, payload: unknown) => void>();
  closed = false;
  /** What handle answers (after validating as the real one does). */
  answer: (name: RequestName, payload: unknown) => Promise<unknown> = async () => ({});

  async handle(name: RequestName, payload: unknown): Promise<Result<unknown>> {
    this.calls.push({ name, payload });
    try {
      return { ok: true, value: await this.answer(name, parseRequest(name, payload)) };
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
  }

  on(listener: (name: EventName, payload: unknown) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Emits an event to the listeners as the real workbench would (tests may pass invalid ones on purpose). */
  emit(name: string, payload: unknown): void {
    for (const l of this.listeners) l(name as EventName, payload);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

export class FakeDialogs implements Dialogs {
  folder: string | null = '/data/cats';
  exportPath: string | null = '/home/u/run-a.safetensors';
  readonly saveNames: string[] = [];
  async openFolder(): Promise<string | null> {
    return this.folder;
  }
  async saveExport(defaultName: string): Promise<string | null> {
    this.saveNames.push(defaultName);
    return this.exportPath;
  }
}

export class MemoryLog implements Logger {
  readonly lines: string[] = [];
  warn(message: string): void {
    this.lines.push(`warn ${message}`);
  }
  error(message: string): void {
    this.lines.push(`error ${message}`);
  }
}

/** A valid RunSummary. */
export function runSummary(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 'run-1',
    dir: '/ws/runs/run-1',
    kind: 'pretrain',
    title: 'digpt micro sample',
    status: 'running',
    step: 3,
    totalSteps: 100,
    etaSeconds: 12,
    imgPerSec: 40,
    startedAt: '2026-11-26T16:00:00.000Z',
    ...over,
  };
}
