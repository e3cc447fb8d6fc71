// Pure: a folder path from what a browser drop carries (text/uri-list or text/plain), since a browser page cannot
// learn a dropped file's path (Electron's preload can: window.digpt.pathForFile). Chromium hands a web page
// file:// entries of text/uri-list as 'about:blank#blocked', so in a browser a path arrives as text/plain.

/** An absolute POSIX or Windows path, or a file:// URL turned into one; null when the text is neither. */
export function pathFromText(text: string | null | undefined): string | null {
  if (!text) return null;
  const line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l.length > 0 && !l.startsWith('#'));
  if (!line) return null;
  if (line.startsWith('file://')) {
    let url: URL;
    try {
      url = new URL(line);
    } catch {
      return null;
    }
    const p = decodeURIComponent(url.pathname);
    // file:///C:/data -> C:/data
    if (/^\/[A-Za-z]:\//.test(p)) return p.slice(1);
    if (url.host && url.host !== 'localhost') return `//${url.host}${p}`;
    return p || null;
  }
  if (line.startsWith('/') || /^[A-Za-z]:[\\/]/.test(line) || line.startsWith('\\\\')) return line;
  return null;
}

/** The path of a drop: uri-list first (what file managers send), then plain text. */
export function pathFromDrop(
  uriList: string | null | undefined,
  plain: string | null | undefined,
): string | null {
  return pathFromText(uriList) ?? pathFromText(plain);
}
