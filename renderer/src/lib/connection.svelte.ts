// The connection banner's state: the bridge's status, and a counter of reconnections so lists reload after one.
import type { Bridge, ConnectionStatus } from './bridge.js';

export class ConnectionState {
  status = $state<ConnectionStatus>({ state: 'connecting', message: 'connecting…' });
  /** Bumped on every open after the first: data may have changed while disconnected. */
  reconnects = $state(0);
  #wasOpen = false;

  constructor(bridge: Bridge, onReconnect: () => void) {
    bridge.onStatus((s) => {
      this.status = s;
      if (s.state === 'open') {
        if (this.#wasOpen) {
          this.reconnects++;
          onReconnect();
        }
        this.#wasOpen = true;
      }
    });
  }

  get open(): boolean {
    return this.status.state === 'open';
  }
}
