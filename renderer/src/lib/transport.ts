// Pure pieces of the WebSocket transport: the socket's URL, the reconnect delay and what a close code means.

/** The parts of `location` the socket URL depends on. */
export interface PageLocation {
  readonly protocol: string;
  readonly host: string;
  readonly search: string;
}

/** `ws(s)://host/api`, carrying the page's `?token=` (the server also accepts the cookie it set). */
export function wsUrl(loc: PageLocation): string {
  const scheme = loc.protocol === 'https:' ? 'wss' : 'ws';
  const token = new URLSearchParams(loc.search).get('token');
  const query = token ? `?token=${encodeURIComponent(token)}` : '';
  return `${scheme}://${loc.host}/api${query}`;
}

/** Exponential backoff from 500 ms to 10 s; a refused token is retried slowly (it will not fix itself soon). */
export function backoffDelay(attempt: number, refused = false): number {
  if (refused) return 10_000;
  return Math.min(10_000, 500 * 2 ** Math.max(0, attempt));
}

/** A missing or wrong token: the server answers the upgrade 401, which the bridge reports as this code. */
export const CLOSE_REFUSED = 4401;

/** The banner's sentence for a closed socket. */
export function closeMessage(code: number, reason: string): string {
  if (code === CLOSE_REFUSED) return 'not connected: the token is missing or wrong';
  return reason ? `not connected: ${reason}` : 'not connected to the workbench; retrying';
}
