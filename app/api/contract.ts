// The workbench API: every request, response and event between a UI and the workbench, validated at each boundary.
// Both transports (Electron IPC and the `digpt serve` WebSocket) carry exactly these messages; the renderer sees
// nothing else. Pure data and zod: no Node, no DOM, no engine imports.
import { z } from 'zod';
import { FINETUNE, KNN, PRETRAIN, PROBE, settingsShape } from './run-kinds.js';

// --- shared shapes ---

export const DatasetSplit = z.object({
  name: z.enum(['train', 'val', 'test']),
  /** Images per class name (unlabelled: one entry ''). */
  perClass: z.record(z.string(), z.number().int().nonnegative()),
  images: z.number().int().nonnegative(),
});

export const DatasetEntry = z.object({
  id: z.string(),
  path: z.string(),
  name: z.string(),
  builtin: z.boolean(),
  kind: z.enum(['folder', 'idx']),
  layout: z.string(),
  classes: z.array(z.string()),
  splits: z.array(DatasetSplit),
  images: z.number().int().nonnegative(),
  sizes: z.object({
    minWidth: z.number(),
    maxWidth: z.number(),
    minHeight: z.number(),
    maxHeight: z.number(),
  }),
  skipped: z.array(z.object({ path: z.string(), reason: z.string() })),
  warnings: z.array(z.string()),
  /** When the folder was last scanned (ISO time). */
  scannedAt: z.string(),
  /** A scan in progress or a scan error. */
  status: z.enum(['ready', 'scanning', 'error']),
  error: z.string().optional(),
});
export type DatasetEntry = z.infer<typeof DatasetEntry>;

export const Preset = z.object({
  name: z.string(),
  summary: z.string(),
  model: z.record(z.string(), z.unknown()),
});
export type Preset = z.infer<typeof Preset>;

export { Objective } from './run-kinds.js';
const posInt = z.number().int().positive();

/**
 * What a UI can launch: where (dataset and run ids, never raw paths, except a teacher file) and the kind's settings
 * in config.json's names (run-kinds.ts), each optional: the job applies the table's default.
 */
export const LaunchRequest = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('pretrain'),
    dataset: z.string(),
    preset: z.string(),
    /** 'pixels', 'builtin' (the built-in teacher), a run id (a fine-tuning run), or a teacher file path. */
    teacher: z.string(),
    ...settingsShape(PRETRAIN),
  }),
  z.object({
    kind: z.literal('finetune'),
    dataset: z.string(),
    /** A run id (pretraining or fine-tuning) or 'scratch'. */
    from: z.string(),
    preset: z.string().optional(),
    ...settingsShape(FINETUNE),
  }),
  z.object({
    kind: z.literal('probe'),
    dataset: z.string(),
    /** A run id. */
    from: z.string(),
    ...settingsShape(PROBE),
  }),
  z.object({ kind: z.literal('knn'), dataset: z.string(), from: z.string(), ...settingsShape(KNN) }),
]);
export type LaunchRequest = z.infer<typeof LaunchRequest>;

export const RunStatus = z.enum(['running', 'paused', 'stopping', 'done', 'stopped', 'failed', 'idle']);
export type RunStatus = z.infer<typeof RunStatus>;

export const RunSummary = z.object({
  id: z.string(),
  dir: z.string(),
  kind: z.enum(['pretrain', 'finetune', 'probe', 'knn']),
  /** A short label (objective, preset, dataset). */
  title: z.string(),
  status: RunStatus,
  step: z.number().int().nonnegative(),
  totalSteps: z.number().int().nonnegative(),
  etaSeconds: z.number().nullable(),
  imgPerSec: z.number().nullable(),
  error: z.string().optional(),
  /** probe / knn results, the last evaluation of a training run. */
  result: z.record(z.string(), z.union([z.number(), z.string()])).optional(),
  /** A run folder trained elsewhere (digpt_torch on a cluster) that the workbench follows: `runs.watch`. */
  external: z.boolean().optional(),
  startedAt: z.string(),
});
export type RunSummary = z.infer<typeof RunSummary>;

/** One line of a run's metrics.jsonl: a step (loss...) or an evaluation (knn_top1, val_top1...). */
export const MetricRecord = z.record(z.string(), z.union([z.number(), z.string(), z.null()]));
export type MetricRecord = z.infer<typeof MetricRecord>;

/** What the patch-order view draws: images of the step cut into clusters, their order and errors, from the engine. */
export const PatchOrderFrame = z.object({
  runId: z.string(),
  step: z.number().int().nonnegative(),
  clustersPerSide: posInt,
  /** Clusters per sample, K = clustersPerSide^2. */
  k: posInt,
  /** [samples][K]: sequence position i holds cluster order[s][i]. */
  order: z.array(z.array(z.number().int().nonnegative())),
  /** [samples][K-1]: 2 - 2cos per predicted cluster, in sequence order (clusters order[1..K-1] for gen). */
  clusterError: z.array(z.array(z.number())),
  /** The student's view of each sample: PNG data URLs (the same crops the engine trained on). */
  images: z.array(z.string()),
});
export type PatchOrderFrame = z.infer<typeof PatchOrderFrame>;

export const Checkpoint = z.object({
  step: z.number().int().nonnegative(),
  folder: z.string(),
  created: z.string(),
});

/** What an export job writes from a run's newest checkpoint (in the worker: it needs the engine). */
export const CheckpointFormat = z.enum(['timm', 'digpt', 'tfjs']);
export type CheckpointFormat = z.infer<typeof CheckpointFormat>;
/** Every export: a checkpoint format, or `csv`, the run's metrics.jsonl as a table (written by the host). */
export const ExportFormat = z.enum([...CheckpointFormat.options, 'csv']);
export type ExportFormat = z.infer<typeof ExportFormat>;

// --- requests: name -> [request, response] ---

const empty = z.object({});

/**
 * Bytes per upload chunk. Its base64 (683 KiB) plus the envelope fits under the 1 MiB message limit of
 * `digpt serve`, and one chunk in flight per file keeps the server's memory per upload small.
 */
export const UPLOAD_CHUNK_BYTES = 512 * 1024;
const UPLOAD_CHUNK_BASE64 = 4 * Math.ceil(UPLOAD_CHUNK_BYTES / 3);

/** A tfjs backend the engine can run on (engine/backend.ts's BackendName). */
const BackendName = z.enum(['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu']);

/**
 * The backend a job's worker started, as data (engine/backend.ts's BackendReport) and as the line a person reads
 * (describeBackend), so no UI parses the line.
 */
export const BackendInfo = z.object({
  /** The backend in use. */
  name: BackendName,
  /** tfjs's own name for it ('tensorflow', 'webgpu', 'wasm' or 'cpu'). */
  tfName: z.string(),
  /** Each better candidate tried before it, and why it was not used. */
  skipped: z.array(z.object({ name: BackendName, reason: z.string() })),
  /** True when DIGPT_BACKEND chose it. */
  forced: z.boolean(),
  /** On wasm: how the engine's GEMM multiplies ('fma' or 'mul+add') and why. */
  gemm: z.object({ kind: z.enum(['fma', 'mul+add']), why: z.string() }).optional(),
  /** On tensorflow-gpu: whether the products run in TF32. */
  tf32: z.string().optional(),
  /** On webgpu: the adapter Dawn gave (software: SwiftShader, llvmpipe or Dawn's fallback, used only when forced). */
  adapter: z
    .object({
      vendor: z.string(),
      architecture: z.string(),
      device: z.string(),
      description: z.string(),
      isFallbackAdapter: z.boolean(),
      software: z.boolean(),
      maxStorageBufferBindingSize: z.number(),
      maxBufferSize: z.number(),
    })
    .optional(),
  /** One line: "backend: wasm — not used: ... — products: ...". */
  text: z.string(),
});
export type BackendInfo = z.infer<typeof BackendInfo>;

export const Requests = {
  /** `backend`: what the last job reported (every job of a workbench starts the same one); null before any job. */
  'app.info': [
    empty,
    z.object({ version: z.string(), backend: BackendInfo.nullable(), workspace: z.string() }),
  ],
  'presets.list': [empty, z.array(Preset)],
  'datasets.list': [empty, z.array(DatasetEntry)],
  'datasets.add': [z.object({ path: z.string().min(1) }), DatasetEntry],
  'datasets.remove': [z.object({ id: z.string() }), empty],
  'datasets.thumbnails': [
    z.object({
      id: z.string(),
      split: z.enum(['train', 'val', 'test']),
      offset: z.number().int().nonnegative(),
      limit: z.number().int().positive().max(200),
    }),
    z.object({
      total: z.number().int().nonnegative(),
      items: z.array(z.object({ index: z.number().int(), label: z.string(), png: z.string() })),
    }),
  ],
  /**
   * A folder dropped on a browser page (which cannot know its path) is uploaded into the workspace: begin, then
   * each file in order-checked chunks of at most UPLOAD_CHUNK_BYTES, then end (registers it) or abort.
   */
  'datasets.uploadBegin': [
    z.object({
      name: z.string().min(1).max(200),
      /** What the page is about to send, so an upload over the limits is refused before any byte is written. */
      files: z.number().int().nonnegative().optional(),
      bytes: z.number().int().nonnegative().optional(),
    }),
    z.object({ uploadId: z.string(), chunkBytes: posInt.max(UPLOAD_CHUNK_BYTES) }),
  ],
  'datasets.uploadFile': [
    z.object({
      uploadId: z.string(),
      /** Path inside the dropped folder, '/'-separated, relative. */
      path: z.string().min(1).max(1000),
      /** The whole file's size in bytes: checked against the limits at its first chunk; the file ends there. */
      size: z.number().int().nonnegative(),
      /** Where this chunk starts in the file: the number of bytes sent before it. */
      offset: z.number().int().nonnegative(),
      /** The chunk's bytes, base64 (at most UPLOAD_CHUNK_BYTES). */
      data: z.base64().max(UPLOAD_CHUNK_BASE64),
    }),
    /** Bytes of this file received so far; equal to its size once it is complete. */
    z.object({ received: z.number().int().nonnegative() }),
  ],
  'datasets.uploadEnd': [z.object({ uploadId: z.string() }), DatasetEntry],
  /** Drops an upload and what it wrote (after a failure on the page, or a cancel). */
  'datasets.uploadAbort': [z.object({ uploadId: z.string() }), empty],
  'runs.list': [empty, z.array(RunSummary)],
  'runs.launch': [LaunchRequest, RunSummary],
  'runs.control': [
    z.object({ id: z.string(), action: z.enum(['pause', 'continue', 'stop', 'resume']) }),
    RunSummary,
  ],
  'runs.metrics': [z.object({ id: z.string() }), z.array(MetricRecord)],
  'runs.config': [z.object({ id: z.string() }), z.record(z.string(), z.unknown())],
  'runs.patchOrder': [z.object({ id: z.string() }), PatchOrderFrame.nullable()],
  'runs.checkpoints': [z.object({ id: z.string() }), z.array(Checkpoint)],
  /** Follows a run folder trained elsewhere (a synced copy of a digpt_torch run): listed as external, live. */
  'runs.watch': [z.object({ path: z.string().min(1).max(4096) }), RunSummary],
  'runs.unwatch': [z.object({ id: z.string() }), empty],
  'runs.export': [
    z.object({
      id: z.string(),
      format: ExportFormat,
      out: z.string().optional(),
      /** Replace an existing file at `out` (the run's default export path is replaced without it). */
      overwrite: z.boolean().optional(),
    }),
    /** `tensors` written (0 for csv), the checkpoint's step (csv: the last step), `rows` of a csv. */
    z.object({
      path: z.string(),
      tensors: z.number().int(),
      step: z.number().int(),
      rows: z.number().int().optional(),
    }),
  ],
} as const;

export type RequestName = keyof typeof Requests;
export type RequestOf<N extends RequestName> = z.infer<(typeof Requests)[N][0]>;
export type ResponseOf<N extends RequestName> = z.infer<(typeof Requests)[N][1]>;

// --- events: name -> payload ---

export const Events = {
  'run.update': RunSummary,
  'run.metrics': z.object({ runId: z.string(), records: z.array(MetricRecord) }),
  'run.patchOrder': PatchOrderFrame,
  'dataset.update': DatasetEntry,
  'dataset.removed': z.object({ id: z.string() }),
  log: z.object({ level: z.enum(['info', 'warn', 'error']), text: z.string() }),
} as const;

export type EventName = keyof typeof Events;
export type EventOf<N extends EventName> = z.infer<(typeof Events)[N]>;

// --- envelopes (what crosses a transport) ---

/** Handlers answer { ok: true, value } or { ok: false, error } instead of throwing across the boundary. */
export type Result<T> = { ok: true; value: T } | { ok: false; error: string };

export const RequestEnvelope = z.object({
  type: z.literal('request'),
  id: z.number().int(),
  name: z.string(),
  payload: z.unknown(),
});
export const ResponseEnvelope = z.object({
  type: z.literal('response'),
  id: z.number().int(),
  result: z.union([
    z.object({ ok: z.literal(true), value: z.unknown() }),
    z.object({ ok: z.literal(false), error: z.string() }),
  ]),
});
export const EventEnvelope = z.object({ type: z.literal('event'), name: z.string(), payload: z.unknown() });

export function isRequestName(n: string): n is RequestName {
  return Object.hasOwn(Requests, n);
}
export function isEventName(n: string): n is EventName {
  return Object.hasOwn(Events, n);
}

/** Checks a request's payload; the error names the request and the field. */
export function parseRequest<N extends RequestName>(name: N, payload: unknown): RequestOf<N> {
  const r = Requests[name][0].safeParse(payload);
  if (!r.success) throw new Error(`${name}: ${formatIssues(r.error)}`);
  return r.data as RequestOf<N>;
}

/** Checks a response before it leaves the workbench (a bug here is ours, not the UI's). */
export function parseResponse<N extends RequestName>(name: N, value: unknown): ResponseOf<N> {
  const r = Requests[name][1].safeParse(value);
  if (!r.success) throw new Error(`${name} response: ${formatIssues(r.error)}`);
  return r.data as ResponseOf<N>;
}

export function parseEvent<N extends EventName>(name: N, payload: unknown): EventOf<N> {
  const r = Events[name].safeParse(payload);
  if (!r.success) throw new Error(`event ${name}: ${formatIssues(r.error)}`);
  return r.data as EventOf<N>;
}

function formatIssues(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.length ? i.path.join('.') : 'payload'}: ${i.message}`).join('; ');
}

/** The API as a UI sees it: one call per request, one subscription per event. */
export interface WorkbenchApi {
  request<N extends RequestName>(name: N, payload: RequestOf<N>): Promise<ResponseOf<N>>;
  on<N extends EventName>(name: N, handler: (payload: EventOf<N>) => void): () => void;
}
