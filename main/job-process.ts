// Process jobs in the desktop app: a job's engine in an Electron utility process, behind the job host's Transport
// (app/jobs/host.ts). main/index.ts hands this launcher to setProcessLauncher with Electron's utilityProcess.fork.
//
// Why: with the runAsNode fuse off (electron.config.ts) the Electron binary ignores ELECTRON_RUN_AS_NODE, so the
// host's default (child_process.fork of the running binary as Node) cannot start; a utility process is Electron's own
// Node child and works with the fuse off. Its entry (main/job-process-entry.ts) speaks the forked child's channel.
import { EventEmitter } from 'node:events';
import type { HostMessage, WorkerEvent } from '../app/jobs/protocol.js';
import type { ProcessLauncher, Transport, TransportEvents } from '../app/jobs/host.js';

/** The part of Electron's UtilityProcess used here. */
export interface UtilityChild {
  readonly pid: number | undefined;
  postMessage(message: unknown): void;
  /** SIGTERM on POSIX, which a job process ignores (only the host's 'stop' counts); used before it has a pid. */
  kill(): boolean;
  on(event: 'spawn', listener: () => void): this;
  on(event: 'message', listener: (message: unknown) => void): this;
  on(event: 'exit', listener: (code: number) => void): this;
}

/** utilityProcess.fork's signature, as far as it is used. */
export type UtilityFork = (
  modulePath: string,
  args: string[],
  options: {
    env: Record<string, string>;
    execArgv: string[];
    stdio: 'inherit';
    serviceName: string;
  },
) => UtilityChild;

class UtilityTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly kind = 'process';
  private gone = false;
  private killing = false;

  constructor(
    private readonly child: UtilityChild,
    private readonly killPid: (pid: number, signal: NodeJS.Signals) => void,
  ) {
    super();
    child.on('message', (m) => this.emit('message', m as WorkerEvent));
    child.on('spawn', () => {
      if (this.killing) this.hardKill();
    });
    child.on('exit', (code) => {
      this.gone = true;
      // Electron reports a code only; a process we killed reads as the fork transport's SIGKILL
      this.emit('exit', { code, signal: this.killing ? 'SIGKILL' : null });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  post(m: HostMessage): void {
    if (!this.gone) this.child.postMessage(m);
  }

  async terminate(): Promise<void> {
    if (this.gone) return;
    const exited = new Promise<void>((r) => this.once('exit', () => r()));
    this.killing = true;
    this.hardKill();
    await exited;
  }

  /** SIGKILL by pid, as the host's own process transport does; before the spawn, kill() (and again once spawned). */
  private hardKill(): void {
    const pid = this.child.pid;
    if (pid === undefined) {
      this.child.kill();
      return;
    }
    try {
      this.killPid(pid, 'SIGKILL');
    } catch {
      // already gone: its exit is on the way
    }
  }
}

/**
 * The host's process launcher over `fork` (Electron's utilityProcess.fork) and `entry` (dist/main/job-process.js):
 * the child gets the host's environment and heap flags, its output goes to the app's, and it is named in Electron's
 * process list. `killPid` is process.kill (a parameter for the tests).
 */
export function utilityProcessLauncher(
  fork: UtilityFork,
  entry: string,
  killPid: (pid: number, signal: NodeJS.Signals) => void = (pid, signal) => process.kill(pid, signal),
): ProcessLauncher {
  return (env, execArgv) => {
    // unset variables are left out, as child_process.fork leaves them out
    const defined = Object.fromEntries(
      Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined),
    );
    const options = { env: defined, execArgv, stdio: 'inherit', serviceName: 'D-iGPT job' } as const;
    return new UtilityTransport(fork(entry, [], options), killPid);
  };
}
