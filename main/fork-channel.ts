// Inside a job's utility process, without Electron: the channel of a forked Node child (process.send, 'message',
// disconnect), which the job worker speaks (app/worker/entry.ts), laid over Electron's process.parentPort.
//
// Why: the runAsNode fuse is off in the packaged app, so the job host cannot fork the Electron binary as Node; a
// utility process is Electron's Node child, and it talks through process.parentPort instead of process.send.

/** The part of Electron's ParentPort used here: messages arrive wrapped in an event's `data`. */
export interface ParentPortLike {
  on(event: 'message', listener: (event: { data: unknown }) => void): unknown;
  removeListener(event: 'message', listener: (event: { data: unknown }) => void): unknown;
  postMessage(message: unknown): void;
}

/** The part of `process` the channel is laid over. */
export interface ProcessLike {
  send?: (...args: never[]) => boolean;
  disconnect?: () => void;
  readonly connected?: boolean;
  emit(event: string, ...args: unknown[]): boolean;
}

/**
 * Makes `proc` look like a child that `child_process.fork` started: `send(message, [handle], [options], [callback])`
 * posts to the parent (callback called once posted), a parent message is emitted as 'message', `disconnect()` stops
 * listening and emits 'disconnect', and `connected` says whether it was called. Parent messages are held until
 * `start()`: the host sends 'start' as soon as it forks, before the worker has loaded and listens.
 */
export function installForkChannel(proc: ProcessLike, port: ParentPortLike): { start(): void } {
  let connected = true;
  let held: unknown[] | null = [];
  const onMessage = (event: { data: unknown }): void => {
    if (held) held.push(event.data);
    else proc.emit('message', event.data);
  };
  port.on('message', onMessage);
  const send = (message: unknown, ...rest: unknown[]): boolean => {
    const callback = rest.findLast((a): a is (error: Error | null) => void => typeof a === 'function');
    if (!connected) {
      const error = Object.assign(new Error('Channel closed'), { code: 'ERR_IPC_CHANNEL_CLOSED' });
      if (callback) setImmediate(() => callback(error));
      else setImmediate(() => proc.emit('error', error));
      return false;
    }
    port.postMessage(message);
    if (callback) setImmediate(() => callback(null));
    return true;
  };
  // A utility process does not end when its work does (electron#47228): after its last event the worker's own exit
  // timer (app/worker/entry.ts) ends it, as it ends a forked child that something holds.
  const disconnect = (): void => {
    if (!connected) return;
    connected = false;
    port.removeListener('message', onMessage);
    setImmediate(() => proc.emit('disconnect'));
  };
  Object.defineProperties(proc, {
    send: { value: send, configurable: true, writable: true },
    disconnect: { value: disconnect, configurable: true, writable: true },
    connected: { get: () => connected, configurable: true },
  });
  return {
    start() {
      const messages = held ?? [];
      held = null;
      for (const m of messages) proc.emit('message', m);
    },
  };
}
