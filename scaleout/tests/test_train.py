"""digpt_torch's data side and trainer against the workbench (cd scaleout && python3 -m unittest tests.test_train -v).

- The draws (Rng, permutations, crops, cluster orders, the data stream over epochs), the Lanczos cache resize and
  the bicubic crops equal the TypeScript's, bit for bit: a small tsx script prints them from engine/ and app/.
- A bundle built by hand (scaleout/INTERFACE.md) from a workbench run's step-3 checkpoint trains steps 4 and 5 on
  1 rank and on 2 ranks: the same losses and checkpoint values (1e-5), the workbench's own step-4 and step-5 lines
  (1e-5), and its step-5 state.json byte for byte.
- kill -9 of one of 3 ranks (uneven shards, batch 10 x accum 3, whose first step equals the workbench's), a restart through launch/local.sh stopped by SIGTERM (checkpoint at
  the next step boundary, exit 0), a last restart on 1 rank to the end: every step logged once, the recomputed steps
  equal the killed run's.
- A NaN stop (exit 3, no checkpoint of the broken state) and a dataset file whose sha256 differs (refused, named).

Needs node (the workbench, tsx) and, for the training tests, torch; what is missing is skipped with the reason.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCALEOUT = os.path.dirname(HERE)
REPO = os.path.dirname(SCALEOUT)
sys.path.insert(0, SCALEOUT)

from digpt_torch import checkpoint as ck  # noqa: E402
from digpt_torch import data as D  # noqa: E402
from digpt_torch import metrics as M  # noqa: E402
from digpt_torch.rng import Rng  # noqa: E402

SAMPLE = os.path.join(REPO, "app", "datasets", "sample", "fashion-mnist-sample")
TSX = os.path.join(REPO, "node_modules", ".bin", "tsx")
DIGPT = os.path.join(REPO, "bin", "digpt.js")
PY = sys.executable

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

TS_REF = r"""
import { createHash } from 'node:crypto';
const ROOT = process.env.DIGPT_REPO as string;
const { Rng } = await import(`${ROOT}/engine/rng.ts`);
const { drawCrop, cropResizeNormalize } = await import(`${ROOT}/app/worker/augment.ts`);
const { resizeGreyToRgb } = await import(`${ROOT}/app/datasets/resize.ts`);
const { readIdx } = await import(`${ROOT}/app/datasets/idx.ts`);
const { DataStream } = await import(`${ROOT}/app/worker/training-run.ts`);
const { drawOrders } = await import(`${ROOT}/engine/train/pretrain.ts`);
const sha = (b: Uint8Array | Float32Array): string =>
  createHash('sha256').update(new Uint8Array(b.buffer, b.byteOffset, b.byteLength)).digest('hex');
const box = (b: { x: number; y: number; w: number; h: number; flip: boolean }) => [b.x, b.y, b.w, b.h, b.flip ? 1 : 0];
const out: Record<string, unknown> = {};
out.rng = [0, 1, 12345, 4294967295, [1, 2, 3, 4], [0, 0, 0, 0]].map((seed) => {
  const r = new Rng(seed as number);
  return {
    seed, start: new Rng(seed as number).state,
    u32: Array.from({ length: 8 }, () => r.nextU32()),
    uni: Array.from({ length: 8 }, () => r.uniform()),
    ints: [1, 2, 7, 1000, 2700, 4294967295].map((n) => r.int(n)),
    normals: Array.from({ length: 6 }, () => r.normal()),
    perm: Array.from(r.permutation(64)),
    end: r.state,
  };
});
const cr = new Rng(7);
out.crops = [37, 256, 9].map((side) => ({ side, boxes: Array.from({ length: 3000 }, () => box(drawCrop(cr, side))) }));
out.crops_state = cr.state;
out.orders = Array.from(drawOrders(cr, 8, 4));
out.orders_mae = Array.from(drawOrders(cr, 2, 64));
out.orders_state = cr.state;
const { header, data } = await readIdx(process.env.DIGPT_IDX as string);
const [n, rows, cols] = header.dims;
out.resize = [37, 20, 64].map((side) => {
  const m = side === 37 ? n : 100;
  const all = new Uint8Array(m * side * side * 3);
  resizeGreyToRgb(data.subarray(0, m * rows * cols), m, rows, cols, side, (k, rgb) => all.set(rgb, k * side * side * 3));
  return { side, images: m, sha256: sha(all) };
});
const side = 37;
const per = side * side * 3;
const img37 = new Uint8Array(20 * per);
resizeGreyToRgb(data.subarray(0, 20 * rows * cols), 20, rows, cols, side, (k, rgb) => img37.set(rgb, k * per));
const r2 = new Rng(11);
out.views = Array.from({ length: 20 }, (_, i) => {
  const b = drawCrop(r2, side);
  const res = [32, 24, 48].map((o) => {
    const dst = new Float32Array(o * o * 3);
    cropResizeNormalize(img37.subarray(i * per, (i + 1) * per), side, b, o, [0.485, 0.456, 0.406],
      [0.229, 0.224, 0.225], dst, 0);
    return { out: o, sha256: sha(dst) };
  });
  return { box: box(b), res };
});
const st = new DataStream(50, 5);
out.stream = Array.from({ length: 3 }, () => {
  const idx: number[] = [];
  const boxes: number[][] = [];
  for (let i = 0; i < 32; i++) {
    idx.push(st.next());
    boxes.push(box(drawCrop(st.rng, 37)));
  }
  const orders = Array.from(drawOrders(st.rng, 32, 4));
  st.endStep();
  return { idx, boxes, orders, epoch: st.epoch };
});
out.stream_state = st.snapshot();
const nums: number[] = [0, 1, 4, 0.5, 1e21, 1e20, 1.5e-7, 0.000001, 1e-7, 3.125e-5, 5e-324, 2 ** 60, 0.1, 1 / 3,
  Math.fround(0.1), 0.000625, -2.5e-10, 123456.789];
let s = 1;
for (let i = 0; i < 2000; i++) {
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  const e = (s % 60) - 30;
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  nums.push(Math.fround(s / 4294967296 - 0.5) * Math.pow(10, e));
}
out.nums = nums;
out.nums_text = JSON.stringify(nums);
process.stdout.write(JSON.stringify(out) + '\n');
"""


def _node_ok():
    return os.path.exists(TSX) and os.path.exists(DIGPT) and shutil.which("node") is not None


_STATE = {}


def setUpModule():
    tmp = tempfile.mkdtemp(prefix="digpt-torch-test-")
    _STATE["tmp"] = tmp
    if not _node_ok():
        return
    # the TypeScript's draws, the scan of the sample and a 5-step workbench run (checkpoints at 3 and 5), at once
    script = os.path.join(tmp, "ref.mts")
    with open(script, "w") as f:
        f.write(TS_REF)
    env = dict(os.environ, DIGPT_REPO=REPO, DIGPT_IDX=os.path.join(SAMPLE, "train-images-idx3-ubyte.gz"))
    ref = subprocess.Popen([TSX, script], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wb_env = dict(os.environ, DIGPT_WORKSPACE=os.path.join(tmp, "ws"))
    runs = {}
    if HAVE_TORCH:
        # wb: batch 32, checkpoints at 3 and 5; wb_accum: batch 10 x accum 3 (uneven over 3 ranks), checkpoint at 2
        for key, extra in (("wb", ["--steps", "5", "--checkpoint-every", "3"]),
                           ("wb_accum", ["--steps", "4", "--batch", "10", "--accum", "3", "--checkpoint-every", "2"])):
            runs[key] = subprocess.Popen(
                ["node", DIGPT, "pretrain", "--data", SAMPLE, "--preset", "digpt-micro-32", "--teacher", "pixels",
                 *extra, "--out", os.path.join(tmp, key), "--workers", "1"], cwd=REPO,
                env=dict(wb_env, DIGPT_WORKSPACE=os.path.join(tmp, "ws-" + key)), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)
    scan = subprocess.run(["node", DIGPT, "datasets", "scan", SAMPLE, "--json"], cwd=REPO, env=wb_env,
                          capture_output=True, timeout=120)
    out, err = ref.communicate(timeout=120)
    if ref.returncode == 0:
        _STATE["ref"] = json.loads(out)
    else:
        _STATE["ref_error"] = err.decode(errors="replace")[-2000:]
    if scan.returncode == 0:
        _STATE["scan"] = json.loads(scan.stdout)
    else:
        _STATE["scan_error"] = (scan.stdout + scan.stderr).decode(errors="replace")[-2000:]
    for key, wb in runs.items():
        log, _ = wb.communicate(timeout=300)
        if wb.returncode == 0:
            _STATE[key] = os.path.join(tmp, key)
        else:
            _STATE[f"{key}_error"] = log.decode(errors="replace")[-2000:]


def tearDownModule():
    shutil.rmtree(_STATE.get("tmp", ""), ignore_errors=True)


def need(*keys):
    """Skips when a prerequisite is missing (node, tsx, torch); a prerequisite that failed to run is an error."""
    for k in keys:
        if k.startswith("wb") and not HAVE_TORCH:
            raise unittest.SkipTest("torch is not installed (Debian: apt install python3-torch)")
        if k not in _STATE:
            if f"{k}_error" in _STATE:
                raise RuntimeError(f"{k} failed to run:\n{_STATE[f'{k}_error']}")
            raise unittest.SkipTest(f"{k}: node or tsx not found" if not _node_ok() else f"{k}: not available")


# --- bundles by hand (scaleout/INTERFACE.md) ---


def dataset_manifest(scan):
    sp = next(s for s in scan["splits"] if s["name"] == "train")
    files = {}
    for f in (sp["source"]["images"], sp["source"]["labels"]):
        p = os.path.join(scan["root"], f)
        with open(p, "rb") as fh:
            files[f] = {"bytes": os.path.getsize(p), "sha256": hashlib.sha256(fh.read()).hexdigest()}
    return {"format": "digpt-dataset-manifest", "version": 1, "root": scan["root"], "classes": scan["classes"],
            "split": "train", "source": sp["source"], "files": files}


def make_bundle(dst, src_run, step, scan, world=2, config_edit=None, launch=False):
    """A bundle continuing `src_run` from its checkpoint of `step` (its whole metrics.jsonl copied)."""
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(os.path.join(dst, "run", "checkpoints"))
    with open(os.path.join(src_run, "config.json")) as f:
        cfg = json.load(f)
    cfg["scaleout"] = {"nodes": 1, "gpus_per_node": world, "world_size": world,
                       "per_rank_batch": cfg["batch"] // world, "precision": "fp32", "tf32": False,
                       "teacher_file": None, "dataset": "dataset.json"}
    if config_edit:
        config_edit(cfg)
    with open(os.path.join(dst, "run", "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shutil.copy(os.path.join(src_run, "metrics.jsonl"), os.path.join(dst, "run", "metrics.jsonl"))
    name = ck.checkpoint_name(step)
    shutil.copytree(os.path.join(src_run, "checkpoints", name), os.path.join(dst, "run", "checkpoints", name))
    with open(os.path.join(dst, "dataset.json"), "w") as f:
        json.dump(dataset_manifest(scan), f)
    with open(os.path.join(dst, "bundle.json"), "w") as f:
        json.dump({"format": "digpt-scaleout-bundle", "version": 1, "nodes": 1, "gpus_per_node": world,
                   "world_size": world, "per_rank_batch": cfg["batch"] // world}, f)
    if launch:
        shutil.copytree(os.path.join(SCALEOUT, "digpt_torch"), os.path.join(dst, "digpt_torch"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        os.makedirs(os.path.join(dst, "launch"))
        for name in ("local.sh", "torchrun.sh", "slurm.sbatch"):
            with open(os.path.join(SCALEOUT, "launch-templates", name)) as f:
                text = f.read()
            text = text.replace("@LOCAL_NPROC@", "1").replace("@PYTHON@", PY)
            p = os.path.join(dst, "launch", name)
            with open(p, "w") as f:
                f.write(text)
            os.chmod(p, 0o755)
    return dst


def env1():
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=SCALEOUT)
    e.pop("DIGPT_DATA_ROOT", None)
    return e


def train_cmd(bundle, *extra):
    return [PY, "-m", "digpt_torch.train", "--bundle", bundle, *extra]


def launch_cmd(nproc, bundle, *extra):
    return [PY, "-m", "digpt_torch.launch", "--nproc", str(nproc), "--grace", "3", "--", "--bundle", bundle, *extra]


def step_lines(run_dir):
    return [r for r in M.read_records(M.metrics_path(run_dir)) if "loss" in r]


def newest_checkpoint(run_dir):
    good, _ = ck.scan_checkpoints(os.path.join(run_dir, "checkpoints"))
    return good


def read_tensors(path):
    from digpt_torch.safetensors_io import read_safetensors

    return read_safetensors(path)


def max_diff(a, b):
    assert sorted(a) == sorted(b), (sorted(set(a) ^ set(b)))[:5]
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in a)


def wait_for(pred, timeout, proc=None, what="condition"):
    t = time.time()
    while time.time() - t < timeout:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# --- the draws ---


class TestDraws(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need("ref")
        cls.ref = _STATE["ref"]

    def test_rng(self):
        for c in self.ref["rng"]:
            r = Rng(c["seed"])
            self.assertEqual(r.state, c["start"], c["seed"])
            self.assertEqual([r.next_u32() for _ in range(8)], c["u32"])
            self.assertEqual([r.uniform() for _ in range(8)], c["uni"])
            self.assertEqual([r.int(n) for n in [1, 2, 7, 1000, 2700, 4294967295]], c["ints"])
            # log and cos are the C library's here, V8's fdlibm there: the last bit may differ (see rng.py)
            for a, b in zip([r.normal() for _ in range(6)], c["normals"]):
                self.assertAlmostEqual(a, b, delta=1e-14 * max(1.0, abs(b)))
            self.assertEqual(r.permutation(64).tolist(), c["perm"])
            self.assertEqual(r.state, c["end"])

    def test_crops_and_orders(self):
        cr = Rng(7)
        for blk in self.ref["crops"]:
            got = [[b.x, b.y, b.w, b.h, int(b.flip)] for b in (D.draw_crop(cr, blk["side"]) for _ in range(3000))]
            self.assertEqual(got, blk["boxes"], f"side {blk['side']}")
        self.assertEqual(cr.state, self.ref["crops_state"])
        self.assertEqual(D.draw_orders(cr, 8, 4).reshape(-1).tolist(), self.ref["orders"])
        self.assertEqual(D.draw_orders(cr, 2, 64).reshape(-1).tolist(), self.ref["orders_mae"])
        self.assertEqual(cr.state, self.ref["orders_state"])

    def test_stream_over_epochs(self):
        st = D.DataStream(50, 5)
        for mb in self.ref["stream"]:
            b = D.draw_micro_batch(st, 37, 32, 4)
            st.end_step()
            self.assertEqual(b.indices, mb["idx"])
            self.assertEqual([[x.x, x.y, x.w, x.h, int(x.flip)] for x in b.boxes], mb["boxes"])
            self.assertEqual(b.orders.reshape(-1).tolist(), mb["orders"])
            self.assertEqual(b.epoch, mb["epoch"])
        self.assertEqual(st.snapshot(), self.ref["stream_state"])
        # a restored stream goes on drawing the same
        st2 = D.DataStream(50, 99)
        st2.restore(json.loads(json.dumps(st.snapshot())))
        self.assertEqual(D.draw_micro_batch(st2, 37, 8, 4).indices, D.draw_micro_batch(st, 37, 8, 4).indices)

    def test_lanczos_cache_resize(self):
        dims, data = D.read_idx(os.path.join(SAMPLE, "train-images-idx3-ubyte.gz"))
        n, rows, cols = dims
        for rz in self.ref["resize"]:
            m = rz["images"]
            px = D.resize_grey_to_rgb(data[: m * rows * cols], rows, cols, rz["side"])
            self.assertEqual(hashlib.sha256(px.tobytes()).hexdigest(), rz["sha256"], f"side {rz['side']}")

    def test_bicubic_crops(self):
        dims, data = D.read_idx(os.path.join(SAMPLE, "train-images-idx3-ubyte.gz"))
        _, rows, cols = dims
        img = D.resize_grey_to_rgb(data[: 20 * rows * cols], rows, cols, 37)
        r = Rng(11)
        for i, v in enumerate(self.ref["views"]):
            b = D.draw_crop(r, 37)
            self.assertEqual([b.x, b.y, b.w, b.h, int(b.flip)], v["box"])
            for rr in v["res"]:
                res = np.ascontiguousarray(D.crop_resize(img[i], b, rr["out"], D.IMAGENET_MEAN, D.IMAGENET_STD))
                self.assertEqual(hashlib.sha256(res.tobytes()).hexdigest(), rr["sha256"], f"view {i} at {rr['out']}")

    def test_numbers_as_javascript_writes_them(self):
        self.assertEqual(M.js_json(self.ref["nums"]), self.ref["nums_text"])

    def test_shards(self):
        for b, w in ((32, 2), (32, 3), (7, 4), (5, 5)):
            bounds = [D.shard_bounds(b, w, r) for r in range(w)]
            self.assertEqual(bounds[0][0], 0)
            self.assertEqual(bounds[-1][1], b)
            self.assertTrue(all(bounds[i][1] == bounds[i + 1][0] for i in range(w - 1)))
            self.assertLessEqual(max(h - lo for lo, h in bounds) - min(h - lo for lo, h in bounds), 1)


# --- the dataset manifest ---


class TestDataset(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need("scan")
        cls.tmp = tempfile.mkdtemp(dir=_STATE["tmp"])
        cls.manifest = dataset_manifest(_STATE["scan"])

    def write(self, m, name="dataset.json"):
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            json.dump(m, f)
        return p

    def test_good_manifest_loads(self):
        m = D.load_manifest(self.write(self.manifest))
        D.verify_files(m)
        imgs = D.load_images(m, 37)
        self.assertEqual((imgs.count, imgs.side), (2700, 37))

    def test_sha256_mismatch_is_refused_naming_the_file(self):
        bad = json.loads(json.dumps(self.manifest))
        name = self.manifest["source"]["labels"]
        bad["files"][name]["sha256"] = "0" * 64
        m = D.load_manifest(self.write(bad, "bad.json"))
        with self.assertRaises(D.DatasetError) as cm:
            D.verify_files(m)
        self.assertIn(os.path.join(SAMPLE, name), str(cm.exception))
        self.assertIn("sha256", str(cm.exception))

    def test_size_mismatch_and_missing_file(self):
        bad = json.loads(json.dumps(self.manifest))
        name = self.manifest["source"]["images"]
        bad["files"][name]["bytes"] += 1
        with self.assertRaises(D.DatasetError) as cm:
            D.verify_files(D.load_manifest(self.write(bad, "bad2.json")))
        self.assertIn(name, str(cm.exception))
        # a moved dataset: --data-root elsewhere names the missing file and the flag
        with self.assertRaises(D.DatasetError) as cm:
            D.verify_files(D.load_manifest(self.write(self.manifest, "ok.json"), data_root=self.tmp))
        self.assertIn(os.path.join(self.tmp, name), str(cm.exception))
        self.assertIn("--data-root", str(cm.exception))

    def test_the_trainer_refuses_it(self):
        if not HAVE_TORCH or "wb" not in _STATE:
            self.skipTest("needs torch and the workbench run")
        b = make_bundle(os.path.join(self.tmp, "bsha"), _STATE["wb"], 3, _STATE["scan"], world=1)
        with open(os.path.join(b, "dataset.json")) as f:
            m = json.load(f)
        name = m["source"]["images"]
        m["files"][name]["sha256"] = "f" * 64
        with open(os.path.join(b, "dataset.json"), "w") as f:
            json.dump(m, f)
        p = subprocess.run(train_cmd(b), cwd=SCALEOUT, env=env1(), capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(os.path.join(SAMPLE, name), p.stderr)
        self.assertEqual(len(step_lines(os.path.join(b, "run"))), 5)  # nothing was trained or cut


# --- hand-over from the workbench ---


class TestHandOver(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need("scan", "wb")
        cls.tmp = tempfile.mkdtemp(dir=_STATE["tmp"])
        wb = _STATE["wb"]
        cls.wb_lines = {r["step"]: r for r in step_lines(wb)}
        b1 = make_bundle(os.path.join(cls.tmp, "b1"), wb, 3, _STATE["scan"], world=1)
        b2 = make_bundle(os.path.join(cls.tmp, "b2"), wb, 3, _STATE["scan"], world=2)
        p1 = subprocess.Popen(train_cmd(b1), cwd=SCALEOUT, env=env1(), stderr=subprocess.PIPE, text=True)
        p2 = subprocess.Popen(launch_cmd(2, b2), cwd=SCALEOUT, env=env1(), stderr=subprocess.PIPE, text=True)
        cls.err1 = p1.communicate(timeout=300)[1]
        cls.err2 = p2.communicate(timeout=300)[1]
        cls.rc = (p1.returncode, p2.returncode)
        cls.runs = (os.path.join(b1, "run"), os.path.join(b2, "run"))

    def test_both_finish(self):
        self.assertEqual(self.rc, (0, 0), self.err1[-3000:] + "\n----\n" + self.err2[-3000:])

    def test_first_steps_after_the_hand_over_match_the_workbench(self):
        for run in self.runs:
            lines = {r["step"]: r for r in step_lines(run)}
            self.assertEqual(sorted(lines), [1, 2, 3, 4, 5])
            for s in (4, 5):
                for k in ("loss", "loss_gen", "loss_dis", "agreement"):
                    self.assertAlmostEqual(lines[s][k], self.wb_lines[s][k], delta=1e-5, msg=f"{run} step {s} {k}")
                self.assertEqual(lines[s]["lr"], self.wb_lines[s]["lr"])
                self.assertEqual(lines[s]["epoch"], self.wb_lines[s]["epoch"])
                self.assertEqual(list(lines[s]), list(self.wb_lines[s]), "key order")
            for s in (1, 2, 3):
                self.assertEqual(lines[s], self.wb_lines[s], "the workbench's lines are kept as they were")

    def test_one_and_two_ranks_agree(self):
        a = {r["step"]: r for r in step_lines(self.runs[0])}
        b = {r["step"]: r for r in step_lines(self.runs[1])}
        for s in (4, 5):
            self.assertAlmostEqual(a[s]["loss"], b[s]["loss"], delta=1e-5)
        for f in ("model.safetensors", "optimizer.safetensors"):
            ta, ma = read_tensors(os.path.join(self.runs[0], "checkpoints", "step-00000005", f))
            tb, mb = read_tensors(os.path.join(self.runs[1], "checkpoints", "step-00000005", f))
            self.assertEqual(ma, mb)
            self.assertLess(max_diff(ta, tb), 1e-5, f)

    def test_checkpoint_matches_the_workbench(self):
        wb = os.path.join(_STATE["wb"], "checkpoints", "step-00000005")
        for run in self.runs:
            folder = os.path.join(run, "checkpoints", "step-00000005")
            m, why = ck.verify_checkpoint(folder)
            self.assertIsNotNone(m, why)
            self.assertEqual(sorted(m["files"]), ["model.safetensors", "optimizer.safetensors", "state.json"])
            with open(os.path.join(folder, "state.json"), "rb") as f, open(os.path.join(wb, "state.json"), "rb") as g:
                self.assertEqual(f.read(), g.read(), "state.json byte for byte")
            ta, ma = read_tensors(os.path.join(folder, "model.safetensors"))
            tb, mb = read_tensors(os.path.join(wb, "model.safetensors"))
            self.assertEqual(ma, mb, "model.safetensors metadata")
            self.assertLess(max_diff(ta, tb), 2e-5)

    def test_logs(self):
        for run, world in zip(self.runs, (1, 2)):
            recs = M.read_records(M.metrics_path(run))
            ev = [r for r in recs if r.get("event") == "engine"]
            self.assertEqual(len(ev), 1)
            self.assertEqual((ev[0]["step"], ev[0]["engine"], ev[0]["world_size"]), (3, "digpt_torch", world))
            self.assertEqual([r["step"] for r in recs if "knn_top1" in r], [0], "the k-NN line of step 5 is dropped")
            po = M.read_records(M.patch_order_path(run))
            self.assertEqual([r["step"] for r in po], [4, 5])
            self.assertEqual(len(po[0]["order"]), 8)
            self.assertEqual([len(x) for x in po[0]["order"]], [4] * 8)
            self.assertEqual([len(x) for x in po[0]["cluster_error"]], [3] * 8)
            self.assertFalse(os.path.exists(os.path.join(run, ".lock")), "the lock is let go")
        a = M.read_records(M.patch_order_path(self.runs[0]))
        b = M.read_records(M.patch_order_path(self.runs[1]))
        self.assertEqual(a[1]["order"], b[1]["order"])
        np.testing.assert_allclose(a[1]["cluster_error"], b[1]["cluster_error"], atol=1e-4)

    def test_nan_stop(self):
        def blow_up(cfg):
            cfg["blr"] = 1e30
            cfg["checkpoint_every"] = 100

        b = make_bundle(os.path.join(self.tmp, "bnan"), _STATE["wb"], 3, _STATE["scan"], world=1,
                        config_edit=blow_up)
        p = subprocess.run(train_cmd(b), cwd=SCALEOUT, env=env1(), capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 3, p.stderr[-3000:])
        self.assertIn("step-00000003", p.stderr)
        self.assertRegex(p.stderr, r"(loss became|non-finite)")
        run = os.path.join(b, "run")
        self.assertEqual(os.listdir(os.path.join(run, "checkpoints")), ["step-00000003"])
        self.assertTrue(all(M._is_num(r["loss"]) for r in step_lines(run)))
        self.assertLess(max(r["step"] for r in step_lines(run)), 5)


# --- interruptions: kill -9 of a rank, SIGTERM, restarts ---


class TestInterruptions(unittest.TestCase):
    def test_kill_a_rank_then_sigterm_then_finish(self):
        need("scan", "wb_accum")
        tmp = tempfile.mkdtemp(dir=_STATE["tmp"])
        wb_step3 = next(r for r in step_lines(_STATE["wb_accum"]) if r["step"] == 3)

        def longer(cfg):
            cfg["steps"] = 12
            cfg["checkpoint_every"] = 3

        # batch 10 x accum 3 from the workbench's step-2 checkpoint
        b = make_bundle(os.path.join(tmp, "bk"), _STATE["wb_accum"], 2, _STATE["scan"], world=3, config_edit=longer,
                        launch=True)
        run = os.path.join(b, "run")

        # 1. three ranks (10 = 4 + 3 + 3, 3 micro-batches a step); kill -9 rank 1 once step 7 is logged (the
        #    checkpoint of 6 is written)
        p = subprocess.Popen(launch_cmd(3, b), cwd=SCALEOUT, env=env1(), stderr=subprocess.PIPE, text=True)
        pids = {}
        while len(pids) < 3:
            line = p.stderr.readline()
            self.assertTrue(line, "the launcher printed no pids")
            if line.startswith("launch: rank "):
                _, _, r, _, pid = line.split()
                pids[int(r)] = int(pid)
        wait_for(lambda: any(r["step"] >= 7 for r in step_lines(run)), 180, p, "step 7")
        os.kill(pids[1], signal.SIGKILL)
        err = p.communicate(timeout=60)[1]
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("rank 1 was killed by signal 9", err)
        before = {r["step"]: r for r in step_lines(run)}
        # step 3's loss is the forward of the workbench's step-2 weights (the lr of step 3 acts after it)
        for k in ("loss", "loss_gen", "loss_dis", "agreement"):
            self.assertAlmostEqual(before[3][k], wb_step3[k], delta=1e-5, msg=f"step 3 {k} on 3 ranks with accum")
        good = newest_checkpoint(run)
        self.assertIsNotNone(good)
        ck_step = good[1]["step"]
        self.assertGreaterEqual(ck_step, 6)

        # 2. restart through launch/local.sh on 2 ranks; SIGTERM once it logged a step: checkpoint at the next
        #    boundary, exit 0
        env = env1()
        env.pop("PYTHONPATH")
        q = subprocess.Popen([os.path.join(b, "launch", "local.sh"), "--nproc", "2"], cwd=tmp, env=env,
                             stderr=subprocess.PIPE, text=True)
        def stepped_after_restart():
            recs = M.read_records(M.metrics_path(run))
            ev = [i for i, e in enumerate(recs) if e.get("event") == "engine" and e.get("world_size") == 2]
            return ev and any("loss" in e for e in recs[ev[0]:])

        wait_for(stepped_after_restart, 180, q, "a step after the restart")
        q.send_signal(signal.SIGTERM)
        err2 = q.communicate(timeout=120)[1]
        self.assertEqual(q.returncode, 0, err2[-3000:])
        self.assertIn("stopped by SIGTERM", err2)
        lines = step_lines(run)
        stop_step = max(r["step"] for r in lines)
        self.assertLess(stop_step, 12)
        good = newest_checkpoint(run)
        self.assertEqual(good[1]["step"], stop_step, "the checkpoint is of the step at which it stopped")
        self.assertEqual(ck.load_stream_state(good[0])["step"], stop_step)

        # 3. one rank to the end
        r = subprocess.run(train_cmd(b), cwd=SCALEOUT, env=env1(), capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        recs = M.read_records(M.metrics_path(run))
        steps = [x["step"] for x in recs if "loss" in x]
        self.assertEqual(steps, list(range(1, 13)), "every step logged once, in order")
        ev = [(x["step"], x["world_size"]) for x in recs if x.get("event") == "engine"]
        self.assertEqual(ev, [(2, 3), (ck_step, 2), (stop_step, 1)])
        after = {x["step"]: x for x in recs if "loss" in x}
        recomputed = [s for s in before if s > ck_step]
        for s in recomputed:  # computed on 3 ranks before the kill, on 2 after it
            self.assertAlmostEqual(before[s]["loss"], after[s]["loss"], delta=1e-5, msg=f"step {s}")
        for s in before:
            if s <= ck_step:
                self.assertEqual(before[s], after[s])
        self.assertEqual(newest_checkpoint(run)[1]["step"], 12)
        self.assertEqual(sorted(os.listdir(os.path.join(run, "checkpoints")))[-1], "step-00000012")
        self.assertFalse([f for f in os.listdir(os.path.join(run, "checkpoints")) if f.startswith(".tmp-")])
        po = [x["step"] for x in M.read_records(M.patch_order_path(run))]
        self.assertEqual(po, list(range(3, 13)))


if __name__ == "__main__":
    unittest.main()
