// Model configurations in the field names of the D-iGPT spec, their defaults and checks, and the named presets.

/** The D-iGPT pretraining model (spec section 1). Every field has the spec's meaning. */
export interface DigptConfig {
  /** Input side in pixels (square images). */
  readonly img_size: number;
  /** Patch side in pixels; img_size / patch_size = G patches per side. */
  readonly patch_size: number;
  /** Encoder width C. */
  readonly embed_dim: number;
  /** Encoder blocks. */
  readonly depth: number;
  /** Encoder attention heads. */
  readonly num_heads: number;
  /** MLP hidden = mlp_ratio * width (default 4). */
  readonly mlp_ratio: number;
  /** Decoder width. */
  readonly dec_dim: number;
  /** Decoder blocks per decoder. */
  readonly dec_depth: number;
  /** Decoder attention heads. */
  readonly dec_heads: number;
  /** Clusters per side (default 2): K = clusters_per_side^2 clusters of patches. */
  readonly clusters_per_side: number;
  /** Teacher tokens per side (without its cls). */
  readonly teacher_grid: number;
  /** Teacher feature width (the CLIP projection's output). */
  readonly teacher_dim: number;
  /** 1-based encoder blocks whose outputs feed the decoders. */
  readonly taps: readonly number[];
  /** LayerNorm eps of encoder/decoder blocks (1e-6). */
  readonly block_ln_eps: number;
  /** LayerNorm eps of the shared tap norms (1e-5, PyTorch's default). */
  readonly tap_ln_eps: number;
}

/** CLIP vision tower (spec section 2). */
export interface ClipConfig {
  readonly resolution: number;
  readonly patch_size: number;
  readonly width: number;
  readonly layers: number;
  readonly heads: number;
  readonly output_dim: number;
  /** Never defaulted: OpenAI weights use quick_gelu, most OpenCLIP weights gelu. */
  readonly activation: 'quick_gelu' | 'gelu';
  /** 1e-5. */
  readonly ln_eps: number;
}

/** timm ViT classifier (spec section 3). */
export interface VitConfig {
  readonly img_size: number;
  readonly patch_size: number;
  readonly embed_dim: number;
  readonly depth: number;
  readonly num_heads: number;
  readonly mlp_ratio: number;
  readonly num_classes: number;
  /** true: mean of patch tokens + fc_norm (D-iGPT/MAE default); false: norm + cls token. */
  readonly global_pool: boolean;
  /** 1e-6. */
  readonly ln_eps: number;
}

/** Error for a configuration that the model cannot take; names the field. */
export class ConfigError extends Error {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The spec's default taps for depth d: [d/2, 2d/3, 5d/6, d] when 6 | d, else the last min(4, d) blocks. */
export function defaultTaps(depth: number): number[] {
  if (depth % 6 === 0) return [depth / 2, (2 * depth) / 3, (5 * depth) / 6, depth];
  const n = Math.min(4, depth);
  return Array.from({ length: n }, (_, i) => depth - n + 1 + i);
}

function int(v: unknown, field: string, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new ConfigError(
      `config field ${field} must be an integer >= ${min}, got ${JSON.stringify(v)}`,
      field,
    );
  }
  return v;
}

function num(v: unknown, field: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ConfigError(`config field ${field} must be a positive number, got ${JSON.stringify(v)}`, field);
  }
  return v;
}

function divides(a: number, b: number, what: string, field: string): void {
  if (b % a !== 0) throw new ConfigError(`${what} (${field})`, field);
}

/** Fills defaults (mlp_ratio, clusters_per_side, taps, eps) and checks every constraint, naming the field. */
export function resolveDigptConfig(raw: Partial<DigptConfig> & Record<string, unknown>): DigptConfig {
  const img = int(raw.img_size, 'img_size');
  const patch = int(raw.patch_size, 'patch_size');
  const cps = raw.clusters_per_side === undefined ? 2 : int(raw.clusters_per_side, 'clusters_per_side');
  const depth = int(raw.depth, 'depth');
  const cfg: DigptConfig = {
    img_size: img,
    patch_size: patch,
    embed_dim: int(raw.embed_dim, 'embed_dim'),
    depth,
    num_heads: int(raw.num_heads, 'num_heads'),
    mlp_ratio: num(raw.mlp_ratio, 'mlp_ratio', 4),
    dec_dim: int(raw.dec_dim, 'dec_dim'),
    dec_depth: int(raw.dec_depth, 'dec_depth'),
    dec_heads: int(raw.dec_heads, 'dec_heads'),
    clusters_per_side: cps,
    teacher_grid: int(raw.teacher_grid, 'teacher_grid'),
    teacher_dim: int(raw.teacher_dim, 'teacher_dim'),
    taps: raw.taps === undefined ? defaultTaps(depth) : [...raw.taps],
    block_ln_eps: num(raw.block_ln_eps, 'block_ln_eps', 1e-6),
    tap_ln_eps: num(raw.tap_ln_eps, 'tap_ln_eps', 1e-5),
  };
  if (cps < 2)
    throw new ConfigError(
      'clusters_per_side must be at least 2 (one cluster would leave nothing visible)',
      'clusters_per_side',
    );
  if (img % patch !== 0) {
    throw new ConfigError(`img_size ${img} is not divisible by patch_size ${patch}`, 'img_size');
  }
  const grid = img / patch;
  divides(
    cps,
    grid,
    `image size ${img} is not divisible by patch_size x clusters_per_side = ${patch} x ${cps}`,
    'img_size',
  );
  divides(
    cps,
    cfg.teacher_grid,
    `teacher_grid ${cfg.teacher_grid} is not divisible by clusters_per_side ${cps}`,
    'teacher_grid',
  );
  divides(
    cfg.num_heads,
    cfg.embed_dim,
    `embed_dim ${cfg.embed_dim} is not divisible by num_heads ${cfg.num_heads}`,
    'num_heads',
  );
  divides(
    cfg.dec_heads,
    cfg.dec_dim,
    `dec_dim ${cfg.dec_dim} is not divisible by dec_heads ${cfg.dec_heads}`,
    'dec_heads',
  );
  if (cfg.embed_dim % 4 !== 0)
    throw new ConfigError(
      `embed_dim ${cfg.embed_dim} must be divisible by 4 (2-D sin-cos embedding)`,
      'embed_dim',
    );
  if (cfg.dec_dim % 4 !== 0)
    throw new ConfigError(`dec_dim ${cfg.dec_dim} must be divisible by 4 (2-D sin-cos embedding)`, 'dec_dim');
  if (cfg.taps.length === 0) throw new ConfigError('taps must name at least one block', 'taps');
  for (const t of cfg.taps) {
    if (!Number.isInteger(t) || t < 1 || t > depth) {
      throw new ConfigError(`taps entry ${JSON.stringify(t)} is not a block index in 1..${depth}`, 'taps');
    }
  }
  return cfg;
}

/** Derived sizes of a D-iGPT config. */
export interface DigptGeometry {
  /** Patches per side. */
  readonly grid: number;
  /** Patches per cluster side. */
  readonly side: number;
  /** Clusters. */
  readonly k: number;
  /** Tokens per cluster. */
  readonly t: number;
  /** Visible tokens, (K-1) * T; the sequence is N + 1 with cls. */
  readonly n: number;
  /** Teacher tokens per cluster side. */
  readonly tside: number;
}

export function digptGeometry(c: DigptConfig): DigptGeometry {
  const grid = c.img_size / c.patch_size;
  const side = grid / c.clusters_per_side;
  const k = c.clusters_per_side ** 2;
  const t = side * side;
  return { grid, side, k, t, n: (k - 1) * t, tside: c.teacher_grid / c.clusters_per_side };
}

export function resolveClipConfig(
  raw: Partial<ClipConfig> & Record<string, unknown>,
  source = 'CLIP config',
): ClipConfig {
  const act = raw.activation as unknown;
  if (act !== 'quick_gelu' && act !== 'gelu') {
    throw new ConfigError(
      `${source}: the activation is ${act === undefined ? 'missing' : `'${String(act)}', unknown`}; ` +
        `say "quick_gelu" (OpenAI weights) or "gelu" (most OpenCLIP weights) in the file's metadata or a sidecar config`,
      'activation',
    );
  }
  const cfg: ClipConfig = {
    resolution: int(raw.resolution, 'resolution'),
    patch_size: int(raw.patch_size, 'patch_size'),
    width: int(raw.width, 'width'),
    layers: int(raw.layers, 'layers'),
    heads: int(raw.heads, 'heads'),
    output_dim: int(raw.output_dim, 'output_dim'),
    activation: act,
    ln_eps: num(raw.ln_eps, 'ln_eps', 1e-5),
  };
  divides(
    cfg.patch_size,
    cfg.resolution,
    `${source}: resolution ${cfg.resolution} is not divisible by patch_size ${cfg.patch_size}`,
    'resolution',
  );
  divides(
    cfg.heads,
    cfg.width,
    `${source}: width ${cfg.width} is not divisible by heads ${cfg.heads}`,
    'heads',
  );
  return cfg;
}

export function resolveVitConfig(raw: Partial<VitConfig> & Record<string, unknown>): VitConfig {
  const cfg: VitConfig = {
    img_size: int(raw.img_size, 'img_size'),
    patch_size: int(raw.patch_size, 'patch_size'),
    embed_dim: int(raw.embed_dim, 'embed_dim'),
    depth: int(raw.depth, 'depth'),
    num_heads: int(raw.num_heads, 'num_heads'),
    mlp_ratio: num(raw.mlp_ratio, 'mlp_ratio', 4),
    num_classes: int(raw.num_classes, 'num_classes'),
    global_pool: raw.global_pool ?? true,
    ln_eps: num(raw.ln_eps, 'ln_eps', 1e-6),
  };
  divides(
    cfg.patch_size,
    cfg.img_size,
    `img_size ${cfg.img_size} is not divisible by patch_size ${cfg.patch_size}`,
    'img_size',
  );
  divides(
    cfg.num_heads,
    cfg.embed_dim,
    `embed_dim ${cfg.embed_dim} is not divisible by num_heads ${cfg.num_heads}`,
    'num_heads',
  );
  return cfg;
}

/** A named recipe: the student and decoders; teacher_grid/teacher_dim are defaults that a chosen teacher overrides. */
export interface Preset {
  readonly name: string;
  /** One sentence for the launcher. */
  readonly summary: string;
  readonly model: DigptConfig;
}

function preset(
  name: string,
  summary: string,
  model: Partial<DigptConfig> & Record<string, unknown>,
): Preset {
  return { name, summary, model: resolveDigptConfig(model) };
}

export const PRESETS: readonly Preset[] = [
  preset(
    'digpt-micro-32',
    'A tiny 32 px model (width 64, 3 blocks) for tests and the demo: trains in seconds on a CPU.',
    {
      img_size: 32,
      patch_size: 4,
      embed_dim: 64,
      depth: 3,
      num_heads: 2,
      dec_dim: 64,
      dec_depth: 1,
      dec_heads: 2,
      clusters_per_side: 2,
      teacher_grid: 8,
      teacher_dim: 64,
    },
  ),
  preset(
    'digpt-tiny-32',
    'A ViT-Tiny-sized student at 32 px (width 192, 6 blocks, 3 heads): the CPU benchmark model.',
    {
      img_size: 32,
      patch_size: 4,
      embed_dim: 192,
      depth: 6,
      num_heads: 3,
      dec_dim: 192,
      dec_depth: 2,
      dec_heads: 3,
      clusters_per_side: 2,
      teacher_grid: 8,
      teacher_dim: 192,
    },
  ),
  preset(
    'digpt-vit-b16',
    "The paper's ViT-B/16 at 224 px with 1024-wide decoders and taps 6/8/10/12: needs a GPU.",
    {
      img_size: 224,
      patch_size: 16,
      embed_dim: 768,
      depth: 12,
      num_heads: 12,
      dec_dim: 1024,
      dec_depth: 2,
      dec_heads: 32,
      clusters_per_side: 2,
      teacher_grid: 16,
      teacher_dim: 1024,
      taps: [6, 8, 10, 12],
    },
  ),
];

/** A preset by name; the error lists the known names. */
export function getPreset(name: string): Preset {
  const p = PRESETS.find((x) => x.name === name);
  if (!p)
    throw new ConfigError(
      `unknown preset '${name}'; known presets: ${PRESETS.map((x) => x.name).join(', ')}`,
      'preset',
    );
  return p;
}
