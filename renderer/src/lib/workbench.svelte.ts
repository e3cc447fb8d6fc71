// The app's root state: the bridge, the connection, one state object per domain, and the navigation.
import { DatasetsState } from '../features/datasets/datasets.svelte.js';
import { RunsState } from '../features/runs/runs.svelte.js';
import type { ResponseOf } from '../../../app/api/contract.js';
import { getBridge, type Bridge } from './bridge.js';
import { ConnectionState } from './connection.svelte.js';

export type View = 'datasets' | 'launch' | 'runs' | 'compare';

/** A warning or error the workbench logged. */
export interface Notice {
  id: number;
  level: 'warn' | 'error';
  text: string;
}

export class Workbench {
  readonly bridge: Bridge;
  readonly connection: ConnectionState;
  readonly datasets: DatasetsState;
  readonly runs: RunsState;
  view = $state<View>('datasets');
  /** The run shown in Runs. */
  selectedRun = $state<string | null>(null);
  /** Runs ticked for Compare. */
  compareIds = $state<string[]>([]);
  info = $state.raw<ResponseOf<'app.info'> | null>(null);
  /** The last few warnings and errors (info lines are not shown). */
  notices = $state<Notice[]>([]);
  #noticeId = 0;

  constructor(bridge: Bridge = getBridge()) {
    this.bridge = bridge;
    this.datasets = new DatasetsState(bridge);
    this.runs = new RunsState(bridge);
    this.connection = new ConnectionState(bridge, () => void this.load());
    bridge.on('log', ({ level, text }) => {
      if (level === 'info') return;
      const id = ++this.#noticeId;
      this.notices = [...this.notices.slice(-3), { id, level, text }];
      setTimeout(() => this.dismiss(id), level === 'error' ? 20_000 : 8_000);
    });
    // The backend is chosen when the first job starts: ask again once a run reports.
    bridge.on('run.update', () => {
      if (this.info && this.info.backend === null) void this.#loadInfo();
    });
  }

  #infoPending = false;
  async #loadInfo(): Promise<void> {
    if (this.#infoPending) return;
    this.#infoPending = true;
    try {
      this.info = await this.bridge.request('app.info', {});
    } catch {
      // the nav shows no version
    } finally {
      this.#infoPending = false;
    }
  }

  async load(): Promise<void> {
    await Promise.all([this.datasets.load(), this.runs.load(), this.#loadInfo()]);
  }

  dismiss(id: number): void {
    this.notices = this.notices.filter((n) => n.id !== id);
  }

  showRun(id: string): void {
    this.selectedRun = id;
    this.view = 'runs';
  }
}
