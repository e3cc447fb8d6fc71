// Makes the built-in sample, app/datasets/sample/fashion-mnist-sample/: the first 3,000 train and 1,000 test
// images of Fashion-MNIST as gzipped IDX files, with its license. Usage: npx tsx scripts/make-sample.ts [SOURCE_DIR]
// (default ../shared/datasets/fashion-mnist). The output is the same bytes on every run.
import { chmod, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as prettier from 'prettier';

import { encodeIdx, readIdx } from '../app/datasets/idx.js';

const repo = resolve(import.meta.dirname, '..');
const source = resolve(process.argv[2] ?? join(repo, '..', 'shared', 'datasets', 'fashion-mnist'));
const out = join(repo, 'app', 'datasets', 'sample', 'fashion-mnist-sample');
const TAKE = { train: 3000, t10k: 1000 } as const;
const CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

await mkdir(out, { recursive: true });
const counts: Record<string, number[]> = {};
for (const [prefix, n] of Object.entries(TAKE)) {
  const images = await readIdx(join(source, `${prefix}-images-idx3-ubyte.gz`));
  const labels = await readIdx(join(source, `${prefix}-labels-idx1-ubyte.gz`));
  const [, rows, cols] = images.header.dims as [number, number, number];
  const img = images.data.subarray(0, n * rows * cols);
  const lab = labels.data.subarray(0, n);
  await writeFile(join(out, `${prefix}-images-idx3-ubyte.gz`), await encodeIdx([n, rows, cols], img, true));
  await writeFile(join(out, `${prefix}-labels-idx1-ubyte.gz`), await encodeIdx([n], lab, true));
  counts[prefix] = CLASSES.map((_, c) => lab.filter((l) => l === c).length);
}
await copyFile(join(source, 'COPYRIGHT'), join(out, 'COPYRIGHT'));
await chmod(join(out, 'COPYRIGHT'), 0o644); // the source may be read-only
await writeFile(join(out, 'classes.txt'), CLASSES.join('\n') + '\n');

const table = CLASSES.map(
  (name, c) => `| ${c} | ${name} | ${counts['train']?.[c] ?? 0} | ${counts['t10k']?.[c] ?? 0} |`,
).join('\n');
const readme = join(out, 'README.md');
const text = `# Fashion-MNIST sample (built-in dataset)

The first ${TAKE.train.toLocaleString('en-US')} training and the first ${TAKE.t10k.toLocaleString('en-US')} test images of
[Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist) (Zalando Research), 28x28 grayscale, 10 classes,
in the dataset's own IDX format (gzipped), so that the workbench has a small dataset to try without a download.
\`train-*\` is the train split and \`t10k-*\` the test split; \`classes.txt\` names the labels 0-9.

Made by \`npx tsx scripts/make-sample.ts\` from the unchanged IDX files that Debian's \`dataset-fashion-mnist\`
package ships: images and labels are the files' first records, byte for byte; nothing else is changed.

| label | class | train | test |
| ----- | ----- | ----- | ---- |
${table}

License: MIT (Expat), Copyright 2017 Zalando SE; see COPYRIGHT.
`;
// formatted as `npm run format:check` wants it
await writeFile(
  readme,
  await prettier.format(text, { ...(await prettier.resolveConfig(readme)), filepath: readme }),
);
console.log(`wrote ${out}`);
