// electron-builder configuration (`npm run dist`): how the desktop app is packaged for Linux, macOS and Windows.
// The main process runs the workbench from the TypeScript sources of app/ and engine/ through tsx (main/index.ts),
// so those ship beside the bundles in dist/; npm dependencies come from package.json's "dependencies".
import type { Configuration } from 'electron-builder';

const config: Configuration = {
  appId: 'org.digpt.workbench',
  productName: 'D-iGPT Workbench',
  directories: { output: 'release' },
  files: [
    'package.json',
    'dist/main/**',
    'dist/renderer/**',
    // The workbench's sources, its built-in sample and teacher (app/datasets/sample, app/teachers).
    'app/**',
    'engine/**',
    '!**/*.map',
  ],
  // Native addons, WebAssembly and executables must sit outside the asar archive to be loaded or spawned.
  asarUnpack: [
    // sharp (image decoding) and its prebuilt libvips
    '**/node_modules/sharp/**',
    '**/node_modules/@img/**',
    '**/node_modules/@tensorflow/tfjs-node/**',
    '**/node_modules/@tensorflow/tfjs-node-gpu/**',
    // tsx compiles app/ with esbuild's binary (main/packaging.ts points ESBUILD_BINARY_PATH at it)
    '**/node_modules/@esbuild/**',
    '**/*.wasm',
    '**/*.node',
  ],
  linux: { target: ['AppImage', 'deb'], category: 'Science' },
  mac: { target: ['dmg'], category: 'public.app-category.developer-tools' },
  win: { target: ['nsis'] },
};

export default config;
