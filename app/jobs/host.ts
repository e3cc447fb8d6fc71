// Hosts engine jobs for the CLI, `digpt serve` and the Electron main process: in a worker thread, or in a child process on tensorflow.
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { decideWebgpu, probeAdapter } from '../../engine/webgpu-adapter.js';
import type { HostMessage, JobSpec, WorkerEvent } from './protocol.js';

/** Events of one job: every WorkerEvent, plus `exit` when its thread or process is gone (a crash reports an error first). */
export interface JobEvents {
  event: [WorkerEvent];
  exit: [{ ok: boolean; error?: string }];
}

/** Where a job's engine runs ('window': the desktop app's hidden engine window, main/engine-window.ts). */
export type TransportKind = 'thread' | 'process' | 'window';

/** What a transport reports to its JobHandle. */
export interface TransportEvents {
  message: [WorkerEvent];
  /** A crash with a message (a worker thread's uncaught exception). */
  crash: [Error];
  /** Gone: the exit code, or the signal that ended a process. */
  exit: [{ code: number | null; signal: NodeJS.Signals | null }];
}

/** One job's engine, behind the same protocol (app/jobs/protocol.ts) whichever it is. */
export interface Transport extends EventEmitter<TransportEvents> {
  readonly kind: TransportKind;
  /** The child's process id (process transport; the renderer's on a window). */
  readonly pid: number | undefined;
  post(m: HostMessage): void;
  /** Ends it at once; resolves when it is gone. */
  terminate(): Promise<void>;
}

/**
 * The job worker's entry: the bundle beside this module when it runs from one (dist/main/worker.js beside the desktop
 * app's dist/main/index.js, scripts/build-main.mjs), else the tsx boot file of the TypeScript sources (CLI, serve, tests).
 */
const BOOT = new URL(import.meta.url).pathname.endsWith('.ts')
  ? new URL('../worker/boot.mjs', import.meta.url)
  : new URL('./worker.js', import.meta.url);

class ThreadTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly kind = 'thread';
  readonly pid = undefined;
  private readonly worker: Worker;

  constructor(env: Record<string, string | undefined>) {
    super();
    this.worker = new Worker(BOOT, { execArgv: [], env });
    this.worker.on('message', (e: WorkerEvent) => this.emit('message', e));
    this.worker.on('error', (err) => this.emit('crash', err));
    this.worker.on('exit', (code) => this.emit('exit', { code, signal: null }));
  }

  post(m: HostMessage): void {
    this.worker.postMessage(m);
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

/** Heap limits of the host carry over to the child (the rest of execArgv, e.g. a test runner's, must not). */
function childExecArgv(): string[] {
  return process.execArgv.filter((a) => /^--(max-old-space-size|max-semi-space-size|stack-size)=/.test(a));
}

class ProcessTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly kind = 'process';
  private readonly child: ChildProcess;
  private gone = false;

  constructor(env: Record<string, string | undefined>, execArgv: string[]) {
    super();
    this.child = fork(fileURLToPath(BOOT), [], {
      env,
      execArgv,
      // typed arrays (cluster orders, sample pixels) survive as typed arrays
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (e) => this.emit('message', e as WorkerEvent));
    // a failed send to a child that has just exited; its exit is reported below
    this.child.on('error', () => undefined);
    this.child.on('exit', (code, signal) => {
      this.gone = true;
      this.emit('exit', { code, signal });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  post(m: HostMessage): void {
    if (this.child.connected) this.child.send(m);
  }

  async terminate(): Promise<void> {
    if (this.gone) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGKILL');
    await exited;
  }
}

/** Starts a job's engine in a child process: (its environment, its Node flags) -> its transport. */
export type ProcessLauncher = (env: Record<string, string | undefined>, execArgv: string[]) => Transport;

const forkProcess: ProcessLauncher = (env, execArgv) => new ProcessTransport(env, execArgv);
let launchProcess: ProcessLauncher = forkProcess;

/**
 * How process jobs start: child_process.fork of this Node by default. The Electron main process gives Electron's
 * utilityProcess (main/job-process.ts): its runAsNode fuse is off, so the binary cannot be forked as Node. null
 * restores the default.
 */
export function setProcessLauncher(launcher: ProcessLauncher | null): void {
  launchProcess = launcher ?? forkProcess;
}

/** Starts GPU jobs elsewhere: the desktop app's hidden engine window, whose worker has Chromium's WebGPU. */
export interface GpuLauncher {
  /** Whether this job's engine goes there, decided without loading tfjs. */
  accepts(env: Readonly<Record<string, string | undefined>>): boolean;
  launch(env: Record<string, string | undefined>): Transport;
}

let launchGpu: GpuLauncher | null = null;

/**
 * Jobs the launcher accepts start there instead of a thread or a process. The Electron main process gives its engine
 * window (main/engine-window.ts): dawn.node cannot run inside Electron, Chromium's WebGPU can. null removes it.
 */
export function setGpuLauncher(launcher: GpuLauncher | null): void {
  launchGpu = launcher;
}

const require = createRequire(import.meta.url);

function resolves(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/** Whether an unforced pick would take webgpu: Dawn offers a real (not software) adapter, asked in a child process. */
function realGpuAdapter(env: Readonly<Record<string, string | undefined>>): boolean {
  return decideWebgpu(probeAdapter(env)).ok;
}

/**
 * Thread or process, decided without loading tfjs. tfjs-node keeps one process-wide TensorFlow backend and a second
 * thread that loads it fails (tfjs#2079, #8388), so a job that would get tensorflow or tensorflow-gpu runs in its own
 * process: DIGPT_BACKEND names one, or (unset) `@tensorflow/tfjs-node(-gpu)` is installed. A job on webgpu does too
 * (DIGPT_BACKEND=webgpu, or unset and Dawn offers a real adapter): `worker.terminate()` during GPU work aborts the whole
 * process (measured with dawn.node), so only a child's end may interrupt it. DIGPT_JOB_PROCESS=1 forces a process.
 */
export function jobTransport(
  env: Readonly<Record<string, string | undefined>> = process.env,
  isInstalled: (pkg: string) => boolean = resolves,
  hasGpuAdapter: (env: Readonly<Record<string, string | undefined>>) => boolean = realGpuAdapter,
): { kind: TransportKind; why: string } {
  if (env['DIGPT_JOB_PROCESS'] === '1') return { kind: 'process', why: 'DIGPT_JOB_PROCESS=1' };
  const forced = env['DIGPT_BACKEND'];
  if (forced === 'tensorflow' || forced === 'tensorflow-gpu')
    return { kind: 'process', why: `DIGPT_BACKEND=${forced}: one TensorFlow per process` };
  if (forced === 'webgpu')
    return { kind: 'process', why: 'DIGPT_BACKEND=webgpu: ending a GPU job must not end the host' };
  if (forced) return { kind: 'thread', why: `DIGPT_BACKEND=${forced}` };
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'])
    if (isInstalled(pkg)) return { kind: 'process', why: `${pkg} is installed: one TensorFlow per process` };
  if (hasGpuAdapter(env))
    return { kind: 'process', why: 'webgpu (a GPU adapter): ending a GPU job must not end the host' };
  return { kind: 'thread', why: 'wasm or cpu: an engine per thread' };
}

/** A transport's engine in a failure's words. */
const ENGINE_NAMES: Record<TransportKind, string> = {
  thread: 'engine worker',
  process: 'engine process',
  window: 'engine window',
};

/** A running job: its events and its controls. */
export class JobHandle extends EventEmitter<JobEvents> {
  private seq = 0;
  private finished = false;
  private failure: string | undefined;
  private killing = false;

  constructor(private readonly transport: Transport) {
    super();
    transport.on('message', (e) => {
      if (e.type === 'error') this.failure = e.message;
      this.emit('event', e);
    });
    // a crashed engine (uncaught exception, out of memory) fails its job; the host keeps running
    transport.on('crash', (err) => {
      this.failure = `engine worker crashed: ${err.message}`;
      this.emit('event', { seq: -1, type: 'error', name: err.name, message: this.failure });
    });
    transport.on('exit', ({ code, signal }) => {
      this.finished = true;
      if ((code !== 0 || signal) && !this.failure) {
        const where = ENGINE_NAMES[transport.kind];
        this.failure = signal ? `${where} was killed by ${signal}` : `${where} exited with code ${code}`;
        this.emit('event', { seq: -1, type: 'error', name: 'WorkerExit', message: this.failure });
      }
      this.emit('exit', this.failure ? { ok: false, error: this.failure } : { ok: true });
    });
  }

  /** 'thread' (worker thread of this process), 'process' (a child process) or 'window' (the engine window). */
  get transportKind(): TransportKind {
    return this.transport.kind;
  }

  /** The child's process id when the job runs in a child process. */
  get pid(): number | undefined {
    return this.transport.pid;
  }

  /** True once kill() was called (the job then fails as a crashed one does: its exit is not asked for). */
  get killed(): boolean {
    return this.killing;
  }

  /** Sends a message, numbered. */
  send(m: HostMessage extends infer M ? (M extends { seq: number } ? Omit<M, 'seq'> : never) : never): void {
    if (!this.finished) this.transport.post({ ...m, seq: this.seq++ } as HostMessage);
  }

  pause(): void {
    this.send({ type: 'pause' });
  }

  continue(): void {
    this.send({ type: 'continue' });
  }

  /** Asks the job to stop after its current step and write a checkpoint. */
  stop(): void {
    this.send({ type: 'stop' });
  }

  /** Ends the job's thread or process at once (no checkpoint); only that one. */
  async kill(): Promise<void> {
    if (this.finished) return;
    this.killing = true;
    await this.transport.terminate();
  }

  /** Resolves when the thread or process has exited. */
  done(): Promise<{ ok: boolean; error?: string }> {
    if (this.finished)
      return Promise.resolve(this.failure ? { ok: false, error: this.failure } : { ok: true });
    return new Promise((r) => this.once('exit', r));
  }
}

/** Starts `job` where the GPU launcher takes it, else in a worker thread, or a child process where jobTransport says so. */
export function startJob(job: JobSpec, env: Record<string, string | undefined> = process.env): JobHandle {
  const transport = (): Transport => {
    if (launchGpu?.accepts(env)) return launchGpu.launch(env);
    return jobTransport(env).kind === 'process'
      ? launchProcess(env, childExecArgv())
      : new ThreadTransport(env);
  };
  const handle = new JobHandle(transport());
  handle.send({ type: 'start', job });
  return handle;
}
