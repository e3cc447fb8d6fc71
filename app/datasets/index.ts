// The dataset layer: scan a folder or IDX files, load a split as uint8 RGB through a decode cache, print a scan.
import { resolve } from 'node:path';

export { formatScan } from './format.js';
export { cacheSideFor, loadSplit } from './load.js';
export { scanDataset } from './scan.js';
export * from './types.js';

/** The built-in sample: 3,000 train and 1,000 test images of Fashion-MNIST as IDX files (see its README.md). */
export const BUILTIN_SAMPLE_DIR = resolve(import.meta.dirname, 'sample', 'fashion-mnist-sample');
