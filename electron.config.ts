// electron-builder configuration (`npm run dist`): how the desktop app is packaged for Linux, macOS and Windows.
// The app runs only bundles (dist/main/, scripts/build-main.mjs) and the built page (dist/renderer/); of app/ it ships
// the data the workbench reads (the built-in sample and teacher), and neither tsx nor esbuild. npm dependencies come
// from package.json's "dependencies".
import type { Configuration } from 'electron-builder';

const config: Configuration = {
  appId: 'org.digpt.workbench',
  productName: 'D-iGPT Workbench',
  directories: { output: 'release' },
  files: [
    'package.json',
    'dist/main/**',
    'dist/renderer/**',
    // read at run time from their source folders (build-main.mjs keeps import.meta.dirname pointing there)
    'app/datasets/sample/**',
    'app/teachers/*.safetensors',
    // what digpt scaleout copies into a bundle: the PyTorch trainer and its launch templates
    'scaleout/digpt_torch/*.py',
    'scaleout/launch-templates/**',
    '!**/*.map',
    // the CLI's TypeScript runner and its compiler: the app runs bundles, so nothing may need them
    '!**/node_modules/tsx/**',
    '!**/node_modules/esbuild/**',
    '!**/node_modules/@esbuild/**',
    // Dawn for Node (npm's webgpu, all platforms' dawn.node): it maps buffers as external ArrayBuffers, which Electron
    // forbids, so the desktop app's jobs never load it (engine/backend.ts skips webgpu inside Electron)
    '!**/node_modules/webgpu/**',
  ],
  // Native addons and WebAssembly must sit outside the asar archive to be loaded.
  asarUnpack: [
    // sharp (image decoding) and its prebuilt libvips
    '**/node_modules/sharp/**',
    '**/node_modules/@img/**',
    '**/node_modules/@tensorflow/tfjs-node/**',
    '**/node_modules/@tensorflow/tfjs-node-gpu/**',
    '**/*.wasm',
    '**/*.node',
  ],
  // Electron's security checklist: the packaged binary cannot be turned into a plain Node (runAsNode: the job host
  // starts utility processes instead, main/job-process.ts), takes no NODE_OPTIONS and no --inspect, loads its code
  // only from app.asar and checks that archive against the hash embedded at build time (macOS and Windows), and gives
  // file:// pages no extra privileges (the page is served from app://, main/app-protocol.ts).
  electronFuses: {
    runAsNode: false,
    enableNodeOptionsEnvironmentVariable: false,
    enableNodeCliInspectArguments: false,
    onlyLoadAppFromAsar: true,
    enableEmbeddedAsarIntegrityValidation: true,
    grantFileProtocolExtraPrivileges: false,
  },
  linux: { target: ['AppImage', 'deb'], category: 'Science' },
  mac: { target: ['dmg'], category: 'public.app-category.developer-tools' },
  win: { target: ['nsis'] },
};

export default config;
