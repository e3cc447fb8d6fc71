// Sends a dropped folder to the workbench in chunks (datasets.upload*), a few files at a time, reporting progress.
// No DOM types: the files come as DroppedFile, so Node tests drive it over a real `digpt serve` socket.
import { UPLOAD_CHUNK_BYTES, type DatasetEntry, type WorkbenchApi } from '../../../../app/api/contract.js';

/** One file of a dropped folder: its path inside the folder, its size, and a way to read a slice of it. */
export interface DroppedFile {
  readonly path: string;
  readonly size: number;
  read(start: number, end: number): Promise<ArrayBuffer>;
}

/** How far an upload is: files and bytes done of the totals. */
export interface UploadProgress {
  readonly files: number;
  readonly filesDone: number;
  readonly bytes: number;
  readonly bytesDone: number;
}

/**
 * Files sent at once. One chunk per file in flight keeps each file's chunks in order; a few files in flight hide the
 * round trip, which dominates for a folder of small photos.
 */
const FILES_IN_FLIGHT = 4;

/**
 * Base64 of bytes. btoa takes a binary string, built in pieces: one String.fromCharCode over a whole chunk overflows
 * the call stack, and `apply` on a typed array is ~10x faster than spreading it.
 */
export function toBase64(bytes: Uint8Array): string {
  const parts: string[] = [];
  for (let i = 0; i < bytes.length; i += 0x2000)
    parts.push(String.fromCharCode.apply(null, bytes.subarray(i, i + 0x2000) as unknown as number[]));
  return btoa(parts.join(''));
}

function mb(bytes: number): string {
  return (bytes / 1024 ** 2).toFixed(1);
}

/** The drop zone's line: "uploading cats: 120/2000 files, 35.2/410.0 MB". */
export function formatProgress(name: string, p: UploadProgress): string {
  return `uploading ${name}: ${p.filesDone}/${p.files} files, ${mb(p.bytesDone)}/${mb(p.bytes)} MB`;
}

/**
 * Uploads `files` as the folder `name` and returns the registered dataset. On any failure the upload is aborted
 * (the server deletes what it received) and the error, which names the file, is thrown.
 */
export async function uploadFolder(
  api: Pick<WorkbenchApi, 'request'>,
  name: string,
  files: readonly DroppedFile[],
  onProgress: (p: UploadProgress) => void = () => undefined,
): Promise<DatasetEntry> {
  const progress = { files: files.length, filesDone: 0, bytes: 0, bytesDone: 0 };
  for (const f of files) progress.bytes += f.size;
  const { uploadId, chunkBytes } = await api.request('datasets.uploadBegin', {
    name,
    files: progress.files,
    bytes: progress.bytes,
  });
  const step = Math.min(chunkBytes, UPLOAD_CHUNK_BYTES);
  onProgress({ ...progress });

  let next = 0;
  let failed = false;
  const sendFile = async (f: DroppedFile): Promise<void> => {
    let offset = 0;
    do {
      const end = Math.min(f.size, offset + step);
      const bytes = new Uint8Array(await f.read(offset, end));
      if (bytes.length !== end - offset) throw new Error(`${f.path} changed while it was being uploaded`);
      await api.request('datasets.uploadFile', {
        uploadId,
        path: f.path,
        size: f.size,
        offset,
        data: toBase64(bytes),
      });
      offset = end;
      progress.bytesDone += bytes.length;
      onProgress({ ...progress });
    } while (offset < f.size && !failed);
  };
  const worker = async (): Promise<void> => {
    while (!failed && next < files.length) {
      const f = files[next++] as DroppedFile;
      try {
        await sendFile(f);
      } catch (e) {
        failed = true;
        throw e;
      }
      if (failed) return;
      progress.filesDone += 1;
      onProgress({ ...progress });
    }
  };

  try {
    await Promise.all(Array.from({ length: Math.min(FILES_IN_FLIGHT, files.length) }, worker));
  } catch (e) {
    // what was sent is of no use without the rest
    await api.request('datasets.uploadAbort', { uploadId }).catch(() => undefined);
    throw e;
  }
  return api.request('datasets.uploadEnd', { uploadId });
}
