// Image files: which names count, reading a header with sharp's metadata, and decoding to square uint8 RGB.
import sharp, { type Metadata, type OutputInfo } from 'sharp';

import { readRegular, readRegularPrefix } from './files.js';

/** Extensions we decode (JPEG, PNG, WebP, GIF). */
const IMAGE_EXTS = new Set(['.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.webp', '.gif']);
/** Image formats sharp could read but the dataset layer does not accept, so they are reported as such. */
const OTHER_IMAGE_EXTS = new Set([
  '.bmp',
  '.tif',
  '.tiff',
  '.avif',
  '.heic',
  '.heif',
  '.svg',
  '.ico',
  '.jp2',
  '.jxl',
]);
/** Formats as sharp's metadata names them. */
const ACCEPTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif']);

/** Files and folders ignored silently: dot-files, OS litter. */
export function isHidden(name: string): boolean {
  return name.startsWith('.') || name === 'Thumbs.db' || name === 'desktop.ini' || name === '__MACOSX';
}

export type NameKind = 'image' | 'other-image' | 'not-image';

export function classifyName(name: string): NameKind {
  const dot = name.lastIndexOf('.');
  const ext = dot < 0 ? '' : name.slice(dot).toLowerCase();
  if (IMAGE_EXTS.has(ext)) return 'image';
  if (OTHER_IMAGE_EXTS.has(ext)) return 'other-image';
  return 'not-image';
}

/** Size of an image as it will be decoded (after EXIF orientation). */
export interface ImageInfo {
  width: number;
  height: number;
  channels: number;
  format: string;
}

/** A failure to read or decode, with the reason shown to the user. */
export class ImageError extends Error {
  override name = 'ImageError';
  constructor(
    readonly code: 'unsupported-format' | 'decode-error',
    message: string,
  ) {
    super(message);
  }
}

/** libvips errors run over several lines of repeated detail; the first line says it. */
function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0]?.trim() || 'unknown error';
}

// Headers are read from the file's first bytes: sharp's metadata needs no more, and a prefix read is cheap for
// large files. Reading bytes ourselves (rather than handing sharp a path) also keeps libvips' operation cache
// from answering for a file that changed on disk.
const HEADER_PREFIX = 256 * 1024;

async function metadataOf(buf: Buffer): Promise<Metadata> {
  return sharp(buf, { failOn: 'none' }).metadata();
}

/**
 * Reads an image's header (fast, no pixel decode). Throws ImageError for non-images and unsupported formats, and
 * UnsafeFileError for anything but a regular file (never opened).
 */
export async function probeImage(path: string, size: number): Promise<ImageInfo> {
  let meta: Metadata;
  if (size <= HEADER_PREFIX) {
    meta = await metadataOf(await readRegular(path)).catch((err: unknown) => {
      throw new ImageError('decode-error', `decode error: ${firstLine(err)}`);
    });
  } else {
    const head = await readRegularPrefix(path, HEADER_PREFIX);
    // a header longer than the prefix (big EXIF/ICC blocks) needs the whole file
    meta = await metadataOf(head).catch(async () =>
      metadataOf(await readRegular(path)).catch((err: unknown) => {
        throw new ImageError('decode-error', `decode error: ${firstLine(err)}`);
      }),
    );
  }
  return infoFromMetadata(meta);
}

function infoFromMetadata(meta: Metadata): ImageInfo {
  const format = meta.format ?? 'unknown';
  if (!ACCEPTED_FORMATS.has(format))
    throw new ImageError('unsupported-format', `unsupported image format (${format})`);
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!width || !height) throw new ImageError('decode-error', 'decode error: no image size in the header');
  return { width, height, channels: meta.channels ?? 0, format };
}

/** Decodes a whole image to check it (the `validate` scan); returns its info. */
export async function validateImage(path: string): Promise<ImageInfo> {
  const buf = await readRegular(path);
  let meta: Metadata;
  try {
    meta = await sharp(buf, { failOn: 'error' }).metadata();
  } catch (err) {
    throw new ImageError('decode-error', `decode error: ${firstLine(err)}`);
  }
  const info = infoFromMetadata(meta);
  try {
    await sharp(buf, { failOn: 'error' }).raw().toBuffer();
  } catch (err) {
    throw new ImageError('decode-error', `decode error: ${firstLine(err)}`);
  }
  return info;
}

/**
 * Decodes an image file to `side` x `side` uint8 RGB (HWC): EXIF orientation applied, the first frame of an
 * animation, grey expanded to RGB, and alpha composited over black and dropped. Black, because it is what
 * PIL's `convert('RGB')` gives for the usual transparent pixels (0,0,0,0), so a PyTorch pipeline over the same
 * files sees the same pixels. The image is scaled so its shorter side is `side` and the centre cropped (resize
 * then centre crop, as torchvision's Resize + CenterCrop), with sharp's Lanczos-3 kernel.
 */
export async function decodeToRgb(buf: Buffer, side: number): Promise<Buffer> {
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await sharp(buf, { failOn: 'error', autoOrient: true, pages: 1, page: 0 })
      .flatten({ background: { r: 0, g: 0, b: 0 } })
      .resize(side, side, { fit: 'cover', position: 'centre' })
      .toColourspace('srgb')
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new ImageError('decode-error', `decode error: ${firstLine(err)}`);
  }
  const { data, info } = out;
  if (info.width !== side || info.height !== side) {
    throw new ImageError(
      'decode-error',
      `decode error: got ${info.width}x${info.height}, wanted ${side}x${side}`,
    );
  }
  if (info.channels === 3) return data;
  if (info.channels === 1) {
    const rgb = Buffer.alloc(side * side * 3);
    for (let i = 0; i < side * side; i++) rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = data[i] as number;
    return rgb;
  }
  throw new ImageError('decode-error', `decode error: ${info.channels} channels after conversion to RGB`);
}

/** Checks the format of a buffer before a full decode (a file may have changed since the scan). */
export async function checkFormat(buf: Buffer): Promise<void> {
  let meta: Metadata;
  try {
    meta = await metadataOf(buf);
  } catch (err) {
    throw new ImageError('decode-error', `decode error: ${firstLine(err)}`);
  }
  infoFromMetadata(meta);
}
