// Paths in the packaged app: tsx compiles app/ with esbuild's native binary, which cannot run from inside app.asar.

/** `path` with its app.asar segment replaced by app.asar.unpacked (where electron.config.ts unpacks natives). */
export function unpackedPath(path: string): string {
  return path.replace(/([\\/])app\.asar([\\/])/, '$1app.asar.unpacked$2');
}

/**
 * Where esbuild's binary for this platform is once unpacked (ESBUILD_BINARY_PATH), or null if its package is not
 * installed. `resolve` is require.resolve of the main bundle.
 */
export function esbuildBinaryPath(
  resolve: (id: string) => string,
  platform: NodeJS.Platform,
  arch: string,
): string | null {
  const id =
    platform === 'win32' ? `@esbuild/win32-${arch}/esbuild.exe` : `@esbuild/${platform}-${arch}/bin/esbuild`;
  try {
    return unpackedPath(resolve(id));
  } catch {
    return null;
  }
}
