"""digpt_torch's models, teachers, AdamW and files against the test vectors, the TypeScript engine and a real
workbench checkpoint. Run: cd scaleout && /usr/bin/python3 -m unittest tests.test_model -v

The vectors come from REPO/../shared/parity; the engine cross-check and the checkpoint need node and the
workbench's node_modules (skipped, saying so, when absent).
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
SCALEOUT = os.path.dirname(HERE)
REPO = os.path.dirname(SCALEOUT)
sys.path.insert(0, SCALEOUT)

from digpt_torch import model as M  # noqa: E402
from digpt_torch import optim as O  # noqa: E402
from digpt_torch import parity as P  # noqa: E402
from digpt_torch import teacher as T  # noqa: E402
from digpt_torch.safetensors_io import (SafetensorsError, SafetensorsFile, read_safetensors,  # noqa: E402
                                        write_safetensors)

VECTORS = P.default_dir()
NODE = shutil.which("node")
TSX = os.path.join(REPO, "node_modules", ".bin", "tsx")


def _env(**kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = SCALEOUT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(kw)
    return env


def _rel(a, b):
    a = (a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)).astype(np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(a.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def _failed(checks):
    return [P._line(c) for c in checks if not c["ok"]]


@unittest.skipUnless(os.path.isdir(VECTORS), f"no test vectors at {VECTORS}")
class ParityTest(unittest.TestCase):
    """Spec section 4: every vector, single-process and as 2 gloo DDP ranks (the 2x2 vector's batch of 3 shards 2+1)."""

    def test_single_process(self):
        checks = P.run(VECTORS, nproc=1)
        self.assertEqual(_failed(checks), [])
        kinds = {c["vector"] for c in checks}
        self.assertGreaterEqual(len(kinds), 6)
        names = {c["check"] for c in checks}
        for must in ("encoder_out", "pred_gen", "pred_dis", "loss_gen", "loss_dis", "gradients", "adamw step",
                     "logits", "openai tokens (openai naming)", "hf tokens (hf naming)"):
            self.assertIn(must, names)

    def test_two_ddp_ranks(self):
        paths = [os.path.join(VECTORS, f) for f in sorted(os.listdir(VECTORS)) if f.startswith("digpt")]
        checks = P.run_ddp(paths, 2, timeout=240)
        self.assertEqual(_failed(checks), [])
        self.assertTrue(any("(rank 1)" in c["check"] and c["check"].startswith("gradients") for c in checks))
        self.assertEqual(P.shards(3, 2), [(0, 2), (2, 3)])

    def test_command_exit_codes(self):
        with tempfile.TemporaryDirectory() as d:
            t, meta = read_safetensors(os.path.join(VECTORS, "vit-gap-tiny.safetensors"))
            t["output.logits"] = t["output.logits"] + 1.0  # a vector the model cannot meet
            write_safetensors(os.path.join(d, "vit-wrong.safetensors"), t, meta)
            r = subprocess.run([sys.executable, "-m", "digpt_torch.parity", d, "--json"], env=_env(),
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 1, r.stderr)
            out = json.loads(r.stdout)
            self.assertEqual((out["passed"], out["failed"]), (0, 1))
            with open(os.path.join(d, "notes.safetensors"), "w") as f:
                f.write("not a tensor file")
            r = subprocess.run([sys.executable, "-m", "digpt_torch.parity", d], env=_env(), capture_output=True,
                               text=True, timeout=120)
            self.assertEqual(r.returncode, 2)
            self.assertIn("notes.safetensors", r.stderr)
        r = subprocess.run([sys.executable, "-m", "digpt_torch.parity", os.path.join(REPO, "no-such-dir")],
                           env=_env(), capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no-such-dir", r.stderr)


# --- the TypeScript engine on the same weights and inputs (every objective, teachers, optimizer v1) ---

ENGINE_FIXTURE = r"""
// digpt_torch's cross-check: the workbench engine's outputs for every objective on one set of inputs.
import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
const R = process.env.XC_REPO as string;
const OUT = process.env.XC_OUT as string;
const imp = (p: string) => import(nodePath.join(R, p));
const { initBackend } = await imp('engine/backend.ts');
const { resolveDigptConfig, resolveVitConfig } = await imp('engine/config.ts');
const { createPretrainModel } = await imp('engine/models/factory.ts');
const { digptOptimizer, drawOrders } = await imp('engine/train/pretrain.ts');
const { gradsOf } = await imp('engine/train/grads.ts');
const { Rng } = await imp('engine/rng.ts');
const { saveWeights } = await imp('engine/models/naming.ts');
const { writeSafetensors } = await imp('engine/io/safetensors.ts');
const { VitClassifier } = await imp('engine/models/vit.ts');
const { openTeacher } = await imp('app/worker/teacher.ts');
await initBackend();
const cfg = resolveDigptConfig(JSON.parse(process.env.XC_CFG as string));
const B = 3, S = cfg.img_size, TT = 1 + cfg.teacher_grid ** 2, DT = cfg.teacher_dim;
const rng = new Rng(7);
const normal = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
const out = new Map();
const put = (k: string, shape: number[], data: Float32Array) => out.set(k, { shape, data });
const nhwc = normal(B * S * S * 3);
const nchw = new Float32Array(nhwc.length);
for (let b = 0; b < B; b++) for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let c = 0; c < 3; c++)
  nchw[((b * 3 + c) * S + y) * S + x] = nhwc[((b * S + y) * S + x) * 3 + c] as number;
put('images_nchw', [B, 3, S, S], nchw);
const teach = normal(B * TT * DT);
put('teacher', [B, TT, DT], teach);
for (const objective of ['digpt', 'gen-only', 'dis-only', 'kd', 'mae']) {
  const model = createPretrainModel(cfg, { objective, seed: 3 });
  for (const [k, v] of await model.params.exportTorch()) put(`${objective}/w/${k}`, v.shape, v.data);
  const order = drawOrders(rng, B, model.orderLength);
  put(`${objective}/order`, [B, model.orderLength], Float32Array.from(order));
  const images = tf.tensor4d(nhwc, [B, S, S, 3]);
  const teacher = tf.tensor3d(teach, [B, TT, DT]);
  const { grads } = gradsOf(model.params.trainable(), () => {
    const o = model.forward({ images, teacher, order });
    const lead = o.gen ?? o.dis;
    put(`${objective}/loss`, [], Float32Array.of(o.loss.dataSync()[0]));
    put(`${objective}/loss_gen`, [], Float32Array.of(o.gen ? o.gen.loss.dataSync()[0] : NaN));
    put(`${objective}/loss_dis`, [], Float32Array.of(o.dis ? o.dis.loss.dataSync()[0] : NaN));
    put(`${objective}/agreement`, [], Float32Array.of(lead.agreement.dataSync()[0]));
    const ce = lead.clusterError.dataSync() as Float32Array;
    put(`${objective}/cluster_error`, [B, ce.length / B], ce);
    return o.loss;
  });
  for (const [k, g] of grads) put(`${objective}/g/${k}`, model.params.specs.get(k).shape, model.params.toTorch(k, g.dataSync() as Float32Array));
  const opt = digptOptimizer(model, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.05 });
  opt.apply(grads, 1e-3);
  for (const [k, v] of await model.params.exportTorch()) put(`${objective}/after/${k}`, v.shape, v.data);
  // optimizer.safetensors version 1 as the workbench wrote it: flat, engine layout, metadata step only
  const st = await opt.exportState();
  const v1 = new Map();
  for (const [label, mm] of [['m', st.m], ['v', st.v]]) for (const [k, d] of mm) v1.set(`${label}.${k}`, { dtype: 'F32', shape: [d.length], data: d });
  writeSafetensors(nodePath.join(OUT, `${objective}-optimizer-v1.safetensors`), v1, { step: String(st.step) });
}
const timgs = tf.tensor4d(nhwc, [B, S, S, 3]);
const pt = openTeacher('pixels', cfg).tokens(timgs);
put('pixels/tokens', pt.shape, pt.dataSync() as Float32Array);
const vcfg = resolveVitConfig({ img_size: S, patch_size: cfg.patch_size, embed_dim: 24, depth: 2, num_heads: 2,
  num_classes: 3, global_pool: true });
const vfile = nodePath.join(OUT, 'vit.safetensors');
saveWeights(vfile, await new VitClassifier(vcfg, 5).params.exportTorch(), { kind: 'vit_classifier', config: JSON.stringify(vcfg) });
const vt = openTeacher(vfile, cfg).tokens(timgs);
put('vit/tokens', vt.shape, vt.dataSync() as Float32Array);
saveWeights(nodePath.join(OUT, 'engine.safetensors'), out);
fs.writeFileSync(nodePath.join(OUT, 'done'), 'ok');
"""

# G = 4 patches per side, clusters of 2x2 patches resized to 1x1 teacher tokens, kd/mae resize 4 -> 2; two decoder
# layers so enc2dec's interleaved memory layout is exercised.
ENGINE_CFG = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, dec_dim=16, dec_depth=2,
                  dec_heads=2, clusters_per_side=2, teacher_grid=2, teacher_dim=12)


@unittest.skipUnless(NODE and os.path.exists(TSX), "needs node and the workbench's node_modules (tsx)")
class EngineCrossCheckTest(unittest.TestCase):
    """Every objective (digpt, gen-only, dis-only, kd, mae): loss, per-head losses, agreement, cluster errors,
    every gradient and one AdamW step against the TypeScript engine; the v1 optimizer file's layout; the pixel
    and classifier teachers."""

    @classmethod
    def setUpClass(cls):
        cache = os.path.join(REPO, ".cache")  # gitignored; inside the repo so the script resolves node_modules
        os.makedirs(cache, exist_ok=True)
        cls.work = tempfile.mkdtemp(prefix="digpt-torch-xcheck-", dir=cache)
        script = os.path.join(cls.work, "fixture.ts")
        with open(script, "w") as f:
            f.write(ENGINE_FIXTURE)
        r = subprocess.run([TSX, script], cwd=REPO, capture_output=True, text=True, timeout=180,
                           env=dict(os.environ, XC_REPO=REPO, XC_OUT=cls.work, XC_CFG=json.dumps(ENGINE_CFG)))
        if r.returncode != 0 or not os.path.exists(os.path.join(cls.work, "done")):
            shutil.rmtree(cls.work, ignore_errors=True)
            raise RuntimeError(f"the engine fixture failed (exit {r.returncode}): {r.stderr[-2000:]}")
        cls.t, _ = read_safetensors(os.path.join(cls.work, "engine.safetensors"))
        cls.x = torch.from_numpy(cls.t["images_nchw"])
        cls.targets = torch.from_numpy(cls.t["teacher"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def _model(self, obj):
        m = M.build_pretrain(ENGINE_CFG, obj)
        n = len(obj) + 3
        M.load_strict(m, {k[n:]: v for k, v in self.t.items() if k.startswith(f"{obj}/w/")}, obj)
        return m

    def test_objectives(self):
        t = self.t
        for obj in M.OBJECTIVES:
            with self.subTest(objective=obj):
                m = self._model(obj)
                order = torch.from_numpy(t[f"{obj}/order"].astype(np.int64))
                r = m(self.x, order, self.targets, normalized=True)
                r["loss"].backward()
                self.assertAlmostEqual(float(r["loss"]), float(t[f"{obj}/loss"]), delta=1e-5)
                for k in ("loss_gen", "loss_dis"):
                    e = float(t[f"{obj}/{k}"])
                    if np.isnan(e):
                        self.assertIsNone(r[k], k)
                    else:
                        self.assertAlmostEqual(float(r[k]), e, delta=1e-5, msg=k)
                self.assertAlmostEqual(float(r["agreement"]), float(t[f"{obj}/agreement"]), delta=1e-5)
                self.assertEqual(tuple(r["cluster_error"].shape), t[f"{obj}/cluster_error"].shape)
                self.assertLess(_rel(r["cluster_error"], t[f"{obj}/cluster_error"]), 1e-4)
                self.assertFalse(r["agreement"].requires_grad or r["cluster_error"].requires_grad)
                params = dict(m.named_parameters())
                grads = {k[len(obj) + 3:]: v for k, v in t.items() if k.startswith(f"{obj}/g/")}
                self.assertEqual(set(grads), set(params))
                for k, g in grads.items():
                    self.assertLess(_rel(params[k].grad, g), 1e-4, k)
                opt = O.make_adamw(m, {"weight_decay": 0.05})
                O.optimizer_step(opt, 1e-3)
                for k, p in params.items():
                    keep = np.abs(grads[k]) >= 1e-6  # rounding noise of a zero gradient flips an Adam step's sign
                    e = t[f"{obj}/after/{k}"]
                    err = np.abs(p.detach().numpy() - e)[keep]
                    self.assertLessEqual(err.max(initial=0.0), 1e-4 * np.abs(e).max(), k)
                # optimizer.safetensors v1 (flat, engine layout) read back as PyTorch-layout moments
                opt2 = O.make_adamw(m, {"weight_decay": 0.05})
                step = O.load_optimizer_from_workbench(opt2, m, os.path.join(self.work, f"{obj}-optimizer-v1.safetensors"))
                self.assertEqual(step, 1)
                for p in m.parameters():
                    for key in ("exp_avg", "exp_avg_sq"):
                        self.assertLess(_rel(opt2.state[p][key], opt.state[p][key]), 1e-4)

    def test_workbench_initial_weights(self):
        """A fresh model starts from the workbench's exact weights for the same seed (every objective)."""
        for obj in M.OBJECTIVES:
            with self.subTest(objective=obj):
                m = M.build_pretrain(ENGINE_CFG, obj, seed=3)
                ref = {k[len(obj) + 3:]: v for k, v in self.t.items() if k.startswith(f"{obj}/w/")}
                sd = m.state_dict()
                self.assertEqual(set(sd), set(ref))
                for k, v in ref.items():
                    got = sd[k].numpy()
                    if k.endswith("_token"):  # Box-Muller through libm vs V8's fdlibm: equal but for a rare ulp
                        self.assertLessEqual(np.abs(got - v).max(), 1e-7, k)
                    else:
                        self.assertTrue(np.array_equal(got, v), k)
                fast = M.build_pretrain(ENGINE_CFG, obj, seed=3, init="fast")
                self.assertEqual(set(fast.state_dict()), set(ref))

    def test_teachers(self):
        cfg = dict(ENGINE_CFG, teacher_grid=4, teacher_dim=48)
        pix = T.load_teacher("pixels", cfg)
        self.assertEqual((pix.resolution, pix.grid, pix.dim), (16, 4, 48))
        self.assertLess(_rel(pix.tokens_from_normalized(self.x), self.t["pixels/tokens"]), 1e-5)
        vit = T.load_teacher(os.path.join(self.work, "vit.safetensors"), {"img_size": 16, "patch_size": 4})
        self.assertEqual((vit.kind, vit.grid, vit.dim), ("vit", 4, 24))
        with torch.no_grad():
            self.assertLess(_rel(vit.tokens_from_normalized(self.x), self.t["vit/tokens"]), 1e-4)
        # the images01 entry point applies the teacher's own mean/std and refuses another resolution
        imgs01 = torch.rand(2, 3, 16, 16)
        self.assertEqual(tuple(vit(imgs01).shape), (2, 17, 24))
        with self.assertRaisesRegex(ValueError, "16"):
            vit(torch.rand(2, 3, 8, 8))


# --- a real workbench checkpoint ---


@unittest.skipUnless(NODE, "needs node to make a workbench checkpoint")
class WorkbenchCheckpointTest(unittest.TestCase):
    """A 2-step pixel-teacher run of the workbench CLI: its model.safetensors loads strictly and saves back
    identical; its optimizer.safetensors reads, writes as version 2 and reads back equal; its lr schedule."""

    @classmethod
    def setUpClass(cls):
        cls.ws = tempfile.mkdtemp(prefix="digpt-torch-ws-")
        run = os.path.join(cls.ws, "r")
        cmd = [NODE, "bin/digpt.js", "pretrain", "--data", "app/datasets/sample/fashion-mnist-sample", "--preset",
               "digpt-micro-32", "--teacher", "pixels", "--steps", "2", "--out", run, "--workers", "1"]
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, DIGPT_WORKSPACE=cls.ws))
        cks = sorted(os.listdir(os.path.join(run, "checkpoints"))) if os.path.isdir(os.path.join(run, "checkpoints")) else []
        if r.returncode != 0 or not cks:
            shutil.rmtree(cls.ws, ignore_errors=True)
            raise RuntimeError(f"the workbench run failed (exit {r.returncode}): {r.stdout[-1500:]} {r.stderr[-1500:]}")
        cls.run_dir = run
        cls.ck = os.path.join(run, "checkpoints", cks[-1])
        with open(os.path.join(run, "config.json")) as f:
            cls.config = json.load(f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.ws, ignore_errors=True)

    def test_state_round_trip(self):
        path = os.path.join(self.ck, "model.safetensors")
        m = M.build_pretrain(self.config["model"], self.config["objective"])
        meta = M.load_workbench_state(m, path)
        with SafetensorsFile(path) as f:
            self.assertEqual(set(m.state_dict()), set(f.keys()))
        self.assertFalse(any(k in dict(m.named_parameters()) for k in ("student_pos", "decoder_pos", "mask")))
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "model.safetensors")
            M.save_workbench_state(m, out)
            a, ma = read_safetensors(path)
            b, mb = read_safetensors(out)
            self.assertEqual(ma, mb)  # kind, config (byte for byte), objective
            self.assertEqual(meta, ma)
            self.assertEqual(set(a), set(b))
            for k in a:
                self.assertEqual(a[k].dtype, b[k].dtype, k)
                self.assertTrue(np.array_equal(a[k], b[k]), k)
        # the model runs on it
        with torch.no_grad():
            r = m(torch.rand(2, 3, 32, 32), torch.stack([torch.randperm(4) for _ in range(2)]),
                  T.load_teacher("pixels", m.model_cfg)(torch.rand(2, 3, 32, 32)))
        self.assertTrue(torch.isfinite(r["loss"]))
        # a model of another objective is refused, naming the file and the keys
        kd = M.build_pretrain(self.config["model"], "kd")
        with self.assertRaises(M.WeightsError) as e:
            M.load_workbench_state(kd, path)
        self.assertIn(path, str(e.exception))
        self.assertIn("missing keys: kd_norm", str(e.exception))
        self.assertIn("unexpected keys", str(e.exception))

    def test_optimizer_read_write_read(self):
        path = os.path.join(self.ck, "optimizer.safetensors")
        m = M.build_pretrain(self.config["model"], self.config["objective"])
        M.load_workbench_state(m, os.path.join(self.ck, "model.safetensors"))
        opt = O.make_adamw(m, self.config)
        step = O.load_optimizer_from_workbench(opt, m, path)
        self.assertEqual(step, 2)
        with tempfile.TemporaryDirectory() as d:
            v2 = os.path.join(d, "v2.safetensors")
            O.save_optimizer(opt, m, v2)
            with SafetensorsFile(v2) as f:
                self.assertEqual(f.metadata, {"format_version": "2", "step": "2"})
                self.assertEqual(f.shape("m.blocks.0.attn.qkv.weight"), (192, 64))
                self.assertEqual(f.shape("v.patch_embed.proj.weight"), (64, 3, 4, 4))
            opt2 = O.make_adamw(m, self.config)
            self.assertEqual(O.load_optimizer_from_workbench(opt2, m, v2), 2)
            for p in m.parameters():
                for key in ("exp_avg", "exp_avg_sq"):
                    self.assertTrue(torch.equal(opt.state[p][key], opt2.state[p][key]))
            # and back to version 1, the engine's flat layout, equal to the workbench's own file when it wrote v1
            v1 = os.path.join(d, "v1.safetensors")
            O.save_optimizer(opt2, m, v1, version=1)
            orig, meta = read_safetensors(path)
            back, meta1 = read_safetensors(v1)
            self.assertEqual(meta1, {"step": "2"})
            if meta.get("format_version", "1") == "1":
                self.assertEqual(set(orig), set(back))
                for k in orig:
                    self.assertTrue(np.array_equal(orig[k], back[k]), k)
            opt3 = O.make_adamw(m, self.config)
            O.load_optimizer_from_workbench(opt3, m, v1)
            for p in m.parameters():
                self.assertTrue(torch.equal(opt.state[p]["exp_avg"], opt3.state[p]["exp_avg"]))
        # one step continues from the restored state
        for p in m.parameters():
            p.grad = torch.zeros_like(p)
        O.optimizer_step(opt, 1e-4)
        self.assertEqual(O._step_of(opt), 3)

    def test_lr_schedule_matches_metrics(self):
        with open(os.path.join(self.run_dir, "metrics.jsonl")) as f:
            steps = [json.loads(line) for line in f if line.strip()]
        lrs = {r["step"]: r["lr"] for r in steps if "lr" in r}
        self.assertEqual(set(lrs), {1, 2})
        for s, lr in lrs.items():
            self.assertAlmostEqual(O.lr_at(s, self.config), lr, delta=1e-12)
        self.assertEqual(O.lr_at(1, self.config), 0.0)


# --- files, configs, schedule ---


class FilesTest(unittest.TestCase):
    def test_malformed_files_are_refused_by_name(self):
        with tempfile.TemporaryDirectory() as d:
            def bad(name, data, why):
                p = os.path.join(d, name)
                with open(p, "wb") as f:
                    f.write(data)
                with self.assertRaises(SafetensorsError) as e:
                    SafetensorsFile(p)
                self.assertIn(p, str(e.exception))
                self.assertRegex(str(e.exception), why)
                return p

            def hdr(obj, data=b""):
                h = json.dumps(obj).encode()
                return struct.pack("<Q", len(h)) + h + data

            bad("short.safetensors", b"abc", "shorter than the 8-byte")
            bad("huge.safetensors", struct.pack("<Q", 1 << 40) + b"x" * 8, "exceeds")
            bad("text.safetensors", b"hello, world, this is not a tensor file", "header length|truncated|JSON")
            bad("json.safetensors", struct.pack("<Q", 5) + b"{nope", "not valid JSON")
            bad("dtype.safetensors", hdr({"a": {"dtype": "Q8", "shape": [1], "data_offsets": [0, 1]}}, b"x"),
                "unsupported dtype")
            bad("size.safetensors", hdr({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"x" * 4),
                "needs 8")
            bad("overlap.safetensors", hdr({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                            "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"x" * 4),
                "overlap")
            bad("trail.safetensors", hdr({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"x" * 9),
                "trailing")
            bad("meta.safetensors", hdr({"__metadata__": {"step": 3}}), "metadata value must be a string")
            p = bad("dup.safetensors", struct.pack("<Q", 60) + b'{"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}} '
                    .ljust(60), "more than once")
            m = M.build_pretrain(M_CFG, "digpt")
            with self.assertRaises(SafetensorsError) as e:
                M.load_workbench_state(m, p)
            self.assertIn("dup.safetensors", str(e.exception))
            with self.assertRaises(SafetensorsError) as e:
                T.load_teacher(p, {})
            self.assertIn("dup.safetensors", str(e.exception))

    def test_dtypes_round_trip(self):
        arrays = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3), "f16": np.array([1.5, -2], np.float16),
                  "i64": np.array([-(2 ** 40), 3], np.int64), "i32": np.array([[7]], np.int32),
                  "u8": np.array([0, 255], np.uint8), "scalar": np.array(2.5, np.float32),
                  "empty": np.zeros((0, 4), np.float32)}
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.safetensors")
            write_safetensors(p, arrays, {"note": "é"})
            back, meta = read_safetensors(p)
            self.assertEqual(meta, {"note": "é"})
            for k, a in arrays.items():
                self.assertEqual(back[k].dtype, a.dtype, k)
                self.assertTrue(np.array_equal(back[k], a), k)
            self.assertEqual(os.listdir(d), ["x.safetensors"])  # no temp file left
            # BF16 is widened to float32
            bits = (np.array([1.0, -3.5], np.float32).view(np.uint32) >> 16).astype("<u2")
            h = json.dumps({"b": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
            h += b" " * (-len(h) % 8)
            with open(p, "wb") as f:
                f.write(struct.pack("<Q", len(h)) + h + bits.tobytes())
            back, _ = read_safetensors(p)
            self.assertEqual(back["b"].dtype, np.float32)
            self.assertEqual(back["b"].tolist(), [1.0, -3.5])
            with self.assertRaises(SafetensorsError):
                write_safetensors(p, {"c": np.array([1 + 2j])})

    def test_config_json_and_schedule(self):
        m = M.build_pretrain(M_CFG, "digpt")
        self.assertEqual(M.js_json(m.model_cfg),
                         '{"img_size":32,"patch_size":4,"embed_dim":64,"depth":3,"num_heads":2,"mlp_ratio":4,'
                         '"dec_dim":64,"dec_depth":1,"dec_heads":2,"clusters_per_side":2,"teacher_grid":8,'
                         '"teacher_dim":48,"taps":[1,2,3],"block_ln_eps":0.000001,"tap_ln_eps":0.00001}')
        for v, s in ((1e-7, "1e-7"), (1.5e-8, "1.5e-8"), (0.1, "0.1"), (123.25, "123.25"), (1e21, "1e+21"),
                     (2.5e20, "250000000000000000000"), (-0.005, "-0.005")):
            self.assertEqual(M.js_json(v), s)
        self.assertEqual(M.default_taps(12), [6, 8, 10, 12])
        self.assertEqual(M.default_taps(3), [1, 2, 3])
        with self.assertRaisesRegex(M.ConfigError, "teacher_grid"):
            M.build_pretrain(dict(M_CFG, teacher_grid=7), "digpt")
        with self.assertRaisesRegex(M.ConfigError, "objective"):
            M.build_pretrain(M_CFG, "simclr")
        cfg = {"blr": 1.5e-4, "batch": 64, "accum": 2, "warmup_steps": 10, "steps": 110, "min_lr": 1e-6}
        base = 1.5e-4 * 128 / 256
        self.assertEqual(O.lr_at(1, cfg), 0.0)
        self.assertAlmostEqual(O.lr_at(6, cfg), base * 5 / 10)
        self.assertAlmostEqual(O.lr_at(11, cfg), base)
        self.assertAlmostEqual(O.lr_at(61, cfg), 1e-6 + (base - 1e-6) * 0.5)
        self.assertAlmostEqual(O.lr_at(111, cfg), 1e-6)
        so = dict(cfg, scaleout={"world_size": 8, "per_rank_batch": 32})
        self.assertAlmostEqual(O.lr_at(11, so), 1.5e-4 * 8 * 32 * 2 / 256)

    def test_decay_groups_and_buffers(self):
        m = M.build_pretrain(M_CFG, "digpt")
        opt = O.make_adamw(m, {"weight_decay": 0.05})
        names = {id(p): n for n, p in m.named_parameters()}
        decay = {names[id(p)] for p in opt.param_groups[0]["params"]}
        no_decay = {names[id(p)] for p in opt.param_groups[1]["params"]}
        self.assertEqual(opt.param_groups[0]["weight_decay"], 0.05)
        self.assertEqual(opt.param_groups[1]["weight_decay"], 0.0)
        self.assertEqual(opt.defaults["betas"], (0.9, 0.95))
        self.assertEqual(opt.defaults["eps"], 1e-8)
        self.assertTrue({"cls_token", "gen_token", "dis_token", "patch_embed.proj.weight",
                         "gen_enc2dec.weight"} <= decay)
        self.assertTrue({"patch_embed.proj.bias", "blocks.0.norm1.weight", "gen_tap_norm.weight"} <= no_decay)
        self.assertEqual(decay | no_decay, set(names.values()))
        buffers = {n for n, _ in m.named_buffers()}
        self.assertTrue({"student_pos", "decoder_pos", "mask"} <= buffers)
        self.assertFalse(buffers & set(m.state_dict()))
        # v1 layouts round-trip, the interleaved memory included
        lay = O.param_layouts(M.build_pretrain(dict(M_CFG, dec_depth=2), "digpt"))
        self.assertEqual(lay["gen_enc2dec.weight"], ("interleaved", 2))
        self.assertEqual(lay["patch_embed.proj.weight"], "conv")
        self.assertEqual(lay["blocks.0.attn.qkv.weight"], "linear")
        rng = np.random.default_rng(0)
        for layout, shape in (("linear", (6, 4)), ("conv", (5, 3, 2, 2)), (("interleaved", 2), (8, 3)),
                              (("interleaved", 2), (8,)), ("plain", (1, 1, 4))):
            a = rng.standard_normal(shape).astype(np.float32)
            self.assertTrue(np.array_equal(O.from_engine(O.to_engine(a, layout), shape, layout), a))
        w = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)  # torch row c*depth + l
        e = O.to_engine(w, ("interleaved", 2)).reshape(3, 8)  # engine [in, l*width + c]
        self.assertEqual(e[1, 0 * 4 + 2], w[2 * 2 + 0, 1])
        self.assertEqual(e[2, 1 * 4 + 3], w[3 * 2 + 1, 2])


M_CFG = {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 3, "num_heads": 2, "mlp_ratio": 4,
         "dec_dim": 64, "dec_depth": 1, "dec_heads": 2, "clusters_per_side": 2, "teacher_grid": 8, "teacher_dim": 48,
         "taps": [1, 2, 3], "block_ln_eps": 0.000001, "tap_ln_eps": 0.00001}


if __name__ == "__main__":
    unittest.main()
