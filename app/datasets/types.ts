// The dataset layer's types: what a scan finds (plain JSON, for `--json` and for loading later) and what a load returns.

/** The three splits a dataset can have, always listed in this order. */
export type SplitName = 'train' | 'val' | 'test';

export const SPLIT_NAMES: readonly SplitName[] = ['train', 'val', 'test'];

/** Options of `scanDataset`. */
export interface ScanOptions {
  /** Fraction of each class moved from train to a carved validation split when the dataset has no `val`. Default 0.1; 0 carves none. */
  valFraction?: number;
  /** Seed of the carved validation split (the same seed gives the same files). Default 0. */
  seed?: number;
  /** Decode every image fully (slower) so that truncated files are found now rather than at load time. Default false. */
  validate?: boolean;
  /** Files probed at once. Default: the machine's parallelism, between 2 and 8. */
  concurrency?: number;
  /** Called as files are probed. */
  onProgress?: (done: number, total: number) => void;
}

/** Why a file was skipped; `reason` is the human text. */
export type SkipCode =
  | 'not-an-image' // an extension that is no image format (notes.txt)
  | 'unsupported-format' // an image format we do not read (.bmp, .tiff, an SVG named .png)
  | 'empty-file' // zero bytes
  | 'unreadable' // stat or read failed (permissions, dangling link)
  | 'special-file' // a FIFO, socket or device (or a folder where a file belongs): never opened
  | 'outside-dataset' // a symbolic link whose target lies outside the dataset folder: not followed
  | 'decode-error' // sharp could not read it: corrupt, truncated, or not an image at all
  | 'misplaced' // an image outside any class folder of a labelled dataset, or outside the split folders
  | 'bad-idx'; // an IDX file with a wrong header, length, or without its partner

export interface SkippedFile {
  /** Path relative to the dataset root, with `/` separators. */
  path: string;
  code: SkipCode;
  reason: string;
}

export type WarningCode =
  | 'empty-class' // a class folder with no usable image
  | 'class-missing-from-split' // a class with train images but none in val or test
  | 'empty-split' // a split without images (e.g. a carved val when every class has one image)
  | 'unlabelled-split' // a split without class folders in an otherwise labelled dataset
  | 'no-images' // nothing usable at all
  | 'ignored-content'; // folders or files that the layout ignores (e.g. beside IDX files)

export interface ScanWarning {
  code: WarningCode;
  message: string;
  /** The class concerned, when there is one. */
  class?: string;
  /** The split concerned, when there is one. */
  split?: SplitName;
}

/** One image of a folder dataset. */
export interface FileItem {
  /** Path relative to the dataset root, with `/` separators. */
  path: string;
  /** Index into `DatasetScan.classes`, or -1 when unlabelled. */
  label: number;
}

/** Where a split's images are. */
export type SplitSource =
  | { kind: 'files'; items: FileItem[] }
  | {
      kind: 'idx';
      /** The images and labels files, relative to the root. */
      images: string;
      labels: string;
      /** Images in the file, and their size. */
      count: number;
      rows: number;
      cols: number;
      /** The images of the file that belong to this split, in order; null means all. */
      indices: number[] | null;
    };

export interface SplitScan {
  name: SplitName;
  /** 'folder': a train/val/test sub-folder or the root; 'idx': an IDX pair; 'carved': moved out of train by the seeded split. */
  origin: 'folder' | 'idx' | 'carved';
  /** Images in this split. */
  count: number;
  /** Images per class, aligned with `DatasetScan.classes` (empty when the dataset is unlabelled). */
  perClass: number[];
  /** Images without a label. */
  unlabelled: number;
  source: SplitSource;
}

export interface SizeStats {
  /** Images measured (all usable ones). */
  count: number;
  minWidth: number;
  maxWidth: number;
  minHeight: number;
  maxHeight: number;
  /** Images by channel count as stored ("1" grey, "2" grey+alpha, "3" RGB, "4" RGBA or CMYK). */
  channels: Record<string, number>;
  /** Images by format ("jpeg", "png", "webp", "gif", "idx"). */
  formats: Record<string, number>;
}

/** What `scanDataset` found. Plain JSON: `JSON.parse(JSON.stringify(scan))` is an equal, loadable scan. */
export interface DatasetScan {
  format: 'digpt-dataset-scan';
  version: 1;
  /** Absolute path of the dataset folder. */
  root: string;
  kind: 'folder' | 'idx';
  /** 'imagefolder': class sub-folders; 'flat': images only; 'splits': train/val/test sub-folders; 'idx': IDX files. */
  layout: 'imagefolder' | 'flat' | 'splits' | 'idx';
  /**
   * Class names; label i is classes[i]. Folder datasets: the class folder names, sorted by code units (as
   * torchvision's ImageFolder sorts them). IDX: the names in `classes.txt`, else "0", "1", ... Empty when unlabelled.
   */
  classes: string[];
  /** Present splits, in the order train, val, test. */
  splits: SplitScan[];
  /** How the validation split came to be: a folder (or IDX pair), carved from train, or none. */
  val: { origin: 'folder' | 'idx' | 'carved' | 'none'; fraction: number; seed: number };
  /** Usable images over all splits. */
  images: number;
  sizes: SizeStats;
  skipped: SkippedFile[];
  warnings: ScanWarning[];
  /** Whether every image was fully decoded during the scan. */
  validated: boolean;
}

/** Options of `loadSplit`. */
export interface LoadOptions {
  /** Side of the square cached images (see `cacheSideFor`). */
  side: number;
  /** Folder of the decode cache; created if missing. */
  cacheDir: string;
  /** Called as images are read (from the cache or decoded). */
  onProgress?: (done: number, total: number) => void;
  /** Images decoded at once. Default: the machine's parallelism, between 2 and 8. */
  concurrency?: number;
}

/** A split in memory. */
export interface LoadedSplit {
  /** [count, side, side, 3] RGB, HWC, uint8. */
  images: Uint8Array;
  /** [count] class indices into `classes`, -1 when unlabelled. */
  labels: Int32Array;
  side: number;
  classes: string[];
  count: number;
  /** Where each image came from: a path relative to the root, or `file#index` for IDX. */
  files: string[];
  /** Files that failed now (e.g. truncated ones a scan without `validate` could not see, or files gone since). */
  skipped: SkippedFile[];
  /** `decoded` images were decoded now; `cached` came from the cache without decoding. */
  stats: { decoded: number; cached: number };
  /** Problems that did not stop the load (e.g. a cache folder that cannot be written). */
  warnings: string[];
}
