// Datasets: the registered folders, kept live by dataset.update / dataset.removed events.
import type { DatasetEntry } from '../../../../app/api/contract.js';
import type { Bridge } from '../../lib/bridge.js';
import { formatProgress, uploadFolder, type DroppedFile, type UploadProgress } from './uploader.js';

export class DatasetsState {
  list = $state<DatasetEntry[]>([]);
  loaded = $state(false);
  error = $state<string | null>(null);
  /** The message of the last add (error, or a hint after a drop without a path). */
  addMessage = $state<{ kind: 'error' | 'info'; text: string } | null>(null);
  adding = $state(false);
  /** The upload of a dropped folder in progress (the drop zone draws its bar), else null. */
  uploadProgress = $state<UploadProgress | null>(null);
  #bridge: Bridge;

  constructor(bridge: Bridge) {
    this.#bridge = bridge;
    bridge.on('dataset.update', (d) => this.#upsert(d));
    bridge.on('dataset.removed', ({ id }) => {
      this.list = this.list.filter((d) => d.id !== id);
    });
  }

  #upsert(d: DatasetEntry): void {
    const i = this.list.findIndex((x) => x.id === d.id);
    if (i >= 0) this.list[i] = d;
    else this.list.push(d);
  }

  async load(): Promise<void> {
    try {
      this.list = await this.#bridge.request('datasets.list', {});
      this.error = null;
    } catch (e) {
      this.error = (e as Error).message;
    } finally {
      this.loaded = true;
    }
  }

  async add(path: string): Promise<DatasetEntry | null> {
    this.adding = true;
    this.addMessage = null;
    try {
      const d = await this.#bridge.request('datasets.add', { path });
      this.#upsert(d);
      this.addMessage = { kind: 'info', text: `added ${d.name}` };
      return d;
    } catch (e) {
      this.addMessage = { kind: 'error', text: (e as Error).message };
      return null;
    } finally {
      this.adding = false;
    }
  }

  /** Uploads a folder dropped on a browser page (which cannot know its path) and registers the copy. */
  async upload(name: string, files: DroppedFile[]): Promise<DatasetEntry | null> {
    this.adding = true;
    this.addMessage = null;
    try {
      const d = await uploadFolder(this.#bridge, name, files, (p) => {
        this.uploadProgress = p;
        this.addMessage = { kind: 'info', text: formatProgress(name, p) };
      });
      this.#upsert(d);
      this.addMessage = { kind: 'info', text: `added ${d.name} (uploaded to ${d.path})` };
      return d;
    } catch (e) {
      this.addMessage = { kind: 'error', text: `could not upload ${name}: ${(e as Error).message}` };
      return null;
    } finally {
      this.adding = false;
      this.uploadProgress = null;
    }
  }

  async remove(id: string): Promise<void> {
    try {
      await this.#bridge.request('datasets.remove', { id });
      this.list = this.list.filter((d) => d.id !== id);
    } catch (e) {
      this.error = (e as Error).message;
    }
  }

  get ready(): DatasetEntry[] {
    return this.list.filter((d) => d.status === 'ready');
  }
}
