// electron-builder configuration: how the desktop app is packaged for Linux, macOS and Windows.
import type { Configuration } from 'electron-builder';

const config: Configuration = {
  appId: 'org.digpt.workbench',
  productName: 'D-iGPT Workbench',
  directories: { output: 'release' },
  files: ['dist/**', 'package.json'],
  // Native addons and WebAssembly binaries must sit outside the asar archive to be loaded.
  asarUnpack: [
    '**/node_modules/sharp/**',
    '**/node_modules/@img/**',
    '**/node_modules/@tensorflow/tfjs-node/**',
    '**/node_modules/@tensorflow/tfjs-node-gpu/**',
    '**/*.wasm',
  ],
  linux: { target: ['AppImage', 'deb'] },
  mac: { target: ['dmg'] },
  win: { target: ['nsis'] },
};

export default config;
