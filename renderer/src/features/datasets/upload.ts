// A folder dropped on a browser page: its files read through the File System entries API and uploaded, one message each.

/** One file of a dropped folder: its path inside the folder and a way to read it. */
export interface DroppedFile {
  readonly path: string;
  read(): Promise<ArrayBuffer>;
}

/** Base64 of bytes, in chunks (String.fromCharCode on a whole file overflows the call stack). */
export function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

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
        const fe = e as FileSystemFileEntry;
        out.push({
          path,
          read: () => new Promise<File>((res, rej) => fe.file(res, rej)).then((f) => f.arrayBuffer()),
        });
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
