// Runs: the list (kept live by run.update events), presets, launching and controlling runs.
import type { LaunchRequest, Preset, RunSummary } from '../../../../app/api/contract.js';
import type { Bridge } from '../../lib/bridge.js';
import type { RunAction } from './controls.js';

export class RunsState {
  list = $state<RunSummary[]>([]);
  presets = $state.raw<Preset[]>([]);
  error = $state<string | null>(null);
  /** Per run id: the last control error. */
  controlErrors = $state<Record<string, string>>({});
  #bridge: Bridge;

  constructor(bridge: Bridge) {
    this.#bridge = bridge;
    bridge.on('run.update', (r) => this.#upsert(r));
  }

  #upsert(r: RunSummary): void {
    const i = this.list.findIndex((x) => x.id === r.id);
    if (i >= 0) this.list[i] = r;
    else this.list.unshift(r);
  }

  async load(): Promise<void> {
    try {
      const [runs, presets] = await Promise.all([
        this.#bridge.request('runs.list', {}),
        this.#bridge.request('presets.list', {}),
      ]);
      this.list = [...runs].sort((a, b) => b.startedAt.localeCompare(a.startedAt));
      this.presets = presets;
      this.error = null;
    } catch (e) {
      this.error = (e as Error).message;
    }
  }

  get(id: string | null): RunSummary | undefined {
    return id === null ? undefined : this.list.find((r) => r.id === id);
  }

  /** Launches; the engine's message is thrown as is (the form shows it). */
  async launch(req: LaunchRequest): Promise<RunSummary> {
    const r = await this.#bridge.request('runs.launch', req);
    this.#upsert(r);
    return r;
  }

  /** Follows a run folder trained elsewhere (a synced digpt_torch run); its message is set when refused. */
  async watch(path: string): Promise<boolean> {
    try {
      this.#upsert(await this.#bridge.request('runs.watch', { path }));
      this.error = null;
      return true;
    } catch (e) {
      this.error = (e as Error).message;
      return false;
    }
  }

  async control(id: string, action: RunAction): Promise<void> {
    try {
      this.#upsert(await this.#bridge.request('runs.control', { id, action }));
      delete this.controlErrors[id];
    } catch (e) {
      this.controlErrors[id] = (e as Error).message;
    }
  }
}
