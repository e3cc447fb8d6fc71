// A folder dropped on a browser page: its files found through the File System entries API (uploader.ts sends them).
import type { DroppedFile } from './uploader.js';

/** Skipped while walking: the same hidden files the dataset scan ignores. */
function hidden(name: string): boolean {
  return name.startsWith('.') || name === 'Thumbs.db' || name === '__MACOSX';
}

function readEntries(dir: FileSystemDirectoryEntry): Promise<FileSystemEntry[]> {
  const reader = dir.createReader();
  const all: FileSystemEntry[] = [];
  return new Promise((resolve, reject) => {
    // readEntries returns the entries in batches until an empty one
    const next = (): void =>
      reader.readEntries((batch) => {
        if (batch.length === 0) resolve(all);
        else {
          all.push(...batch);
          next();
        }
      }, reject);
    next();
  });
}

/** Every file under a dropped directory entry, with '/'-separated paths relative to it. */
export async function walkDirectory(root: FileSystemDirectoryEntry): Promise<DroppedFile[]> {
  const out: DroppedFile[] = [];
  const visit = async (dir: FileSystemDirectoryEntry, prefix: string): Promise<void> => {
    for (const e of await readEntries(dir)) {
      if (hidden(e.name)) continue;
      const path = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory) await visit(e as FileSystemDirectoryEntry, path);
      else {
        // the File is a handle (name, size); its bytes are read a slice at a time while uploading
        const file = await new Promise<File>((res, rej) => (e as FileSystemFileEntry).file(res, rej));
        out.push({ path, size: file.size, read: (start, end) => file.slice(start, end).arrayBuffer() });
      }
    }
  };
  await visit(root, '');
  return out;
}

/** The dropped directory of a DataTransfer, if one was dropped. */
export function droppedDirectory(dt: DataTransfer): FileSystemDirectoryEntry | null {
  for (const item of Array.from(dt.items)) {
    const e = item.webkitGetAsEntry?.();
    if (e?.isDirectory) return e as FileSystemDirectoryEntry;
  }
  return null;
}
