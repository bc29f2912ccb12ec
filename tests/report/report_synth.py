"""A synthetic suite written into a real MLflow store in exactly the shape the writer records.

Used by the report tests (conftest.py) and by ``benchmarks/report_scale.py``. The numbers follow
a model of how the zoo behaves (MAF samples in D passes and IAF evaluates densities in D
passes, splines cost more than affine couplings, FFJORD pays function evaluations, Gaussian and
histogram references are fast and poor), with seed noise, so every figure has something real
to show. Each run's ground truth is returned as a :class:`RunTruth`, which the tests compare
the report against.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from harness import keys

__all__ = ["ARCHS", "DATASETS", "HOSTILE", "RunTruth", "SynthDataset", "fill_suite", "png_bytes"]

# names that must come out of the report as text (escaping tests)
HOSTILE = "<script>alert('suite')</script><img src=x onerror=alert(1)> & \"q\" <b>bold</b>"
HOSTILE_LABEL = "<svg onload=alert(2)>nvp</svg>"
HOSTILE_DEVICE = "cuda:0 <i>H200</i>\"><script>alert(4)</script>"


@dataclass(frozen=True)
class SynthDataset:
    name: str
    kind: str  # continuous | discrete
    dims: int
    levels: int = 0
    entropy: float | None = None  # true differential entropy (nats) where known
    image: tuple[int, int, int] | None = None


REFERENCE_ROWS = ("gaussian", "histogram")  # registry entries with reference=True
DATASETS = {
    "moons": SynthDataset("moons", "continuous", 2),
    "8gaussians": SynthDataset("8gaussians", "continuous", 2, entropy=2.837),
    "power": SynthDataset("power", "continuous", 6),
    "digits": SynthDataset("digits", "discrete", 64, 17, image=(1, 8, 8)),
    "mnist": SynthDataset("mnist", "discrete", 784, 256, image=(1, 28, 28)),
}

# quality: NLL (nats) for continuous data, bpd for discrete, per arch and data set
QUALITY = {
    "realnvp": {"moons": 1.62, "8gaussians": 3.05, "power": 0.90, "digits": 2.25, "mnist": 1.25},
    "maf": {"moons": 1.60, "8gaussians": 3.10, "power": 0.60, "digits": 2.20, "mnist": 1.60},
    "iaf": {"moons": 1.75, "8gaussians": 3.30, "power": 1.20, "digits": 2.40, "mnist": 1.90},
    "glow": {"moons": 1.61, "8gaussians": 3.02, "power": 0.70, "digits": 2.15, "mnist": 1.18},
    "nsf-coupling": {"moons": 1.55, "8gaussians": 2.92, "power": 0.30, "digits": 2.00,
                     "mnist": 1.20},
    "ffjord": {"moons": 1.57, "8gaussians": 2.90, "power": 0.50, "digits": 2.10, "mnist": 1.10},
    "gaussian": {"moons": 2.89, "8gaussians": 3.90, "power": 7.74, "digits": 3.60, "mnist": 4.50},
    "histogram": {"digits": 2.95, "mnist": 2.10},
}
# per-arch cost model: density / sampling passes, ms per dimension, log-det share, inv. error
ARCHS = {
    "realnvp": {"dens": 1, "samp": 1, "ms": 0.020, "share": 0.15, "inv": 1e-6, "label": "realnvp"},
    "maf": {"dens": 1, "samp": "D", "ms": 0.018, "share": 0.10, "inv": 1e-5,
            "label": "maf(hidden=128)"},
    "iaf": {"dens": "D", "samp": 1, "ms": 0.018, "share": 0.10, "inv": 1e-5, "label": "iaf"},
    "glow": {"dens": 1, "samp": 1, "ms": 0.022, "share": 0.25, "inv": 1e-4, "label": "glow"},
    "nsf-coupling": {"dens": 1, "samp": 1, "ms": 0.027, "share": 0.20, "inv": 1e-5,
                     "label": "nsf-coupling"},
    "ffjord": {"dens": 40, "samp": 40, "ms": 0.020, "share": 0.50, "inv": 1e-3, "label": "ffjord"},
    "gaussian": {"dens": 1, "samp": 1, "ms": 0.001, "share": 0.30, "inv": 1e-7,
                 "label": "gaussian"},
    "histogram": {"dens": 1, "samp": 1, "ms": 0.001, "share": 0.05, "inv": 0.0,
                  "label": "histogram"},
}
CURVE_EVERY = 5  # a validation point every CURVE_EVERY training points


@dataclass
class RunTruth:
    """What was written for one run (the tests' independent truth)."""

    run_id: str
    suite: str
    arch: str
    arch_label: str
    dataset: str
    dequant: str
    seed: int
    status: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    curves: pd.DataFrame = field(repr=False)
    curves_in_parquet: bool = True
    samples: bool = False


def png_bytes(img: np.ndarray) -> bytes:
    """A PNG file of a uint8 grey (H, W) or RGB (H, W, 3) image (no imaging library)."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape[:2]
    colour = 2 if img.ndim == 3 else 0
    raw = b"".join(b"\x00" + img[i].tobytes() for i in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + body))
        return struct.pack(">I", len(body)) + tag + body + crc

    head = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _samples_image(ds: SynthDataset, rng: np.random.Generator) -> np.ndarray:
    if ds.image is not None:  # a 4 × 4 grid of noisy blobs, one per sample
        _, h, w = ds.image
        yy, xx = np.mgrid[0:h, 0:w]
        tiles = []
        for _ in range(16):
            cy, cx = rng.uniform(0.3, 0.7, 2) * (h, w)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.08 * h * w))
            tiles.append((255 * np.clip(blob + 0.1 * rng.random((h, w)), 0, 1)).astype(np.uint8))
        rows = [np.concatenate(tiles[r * 4 : r * 4 + 4], axis=1) for r in range(4)]
        return np.concatenate(rows, axis=0)
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]  # a 2-D density heat map
    dens = sum(np.exp(-((xx - a) ** 2 + (yy - b) ** 2) / 0.02)
               for a, b in rng.uniform(-0.7, 0.7, (6, 2)))
    heat = dens / dens.max()
    return (255 * np.stack([heat, heat**2, 0.4 + 0.6 * (1 - heat)], axis=-1)).astype(np.uint8)


def _finals(arch: str, ds: SynthDataset, dequant: str, seed_rng: np.random.Generator,
            batch: int) -> dict[str, float]:
    spec = ARCHS[arch]
    d = ds.dims
    q = QUALITY[arch][ds.name] * (1 + 0.01 * seed_rng.standard_normal())
    if dequant == "variational":
        q -= 0.05
    m: dict[str, float] = {}
    if ds.kind == "discrete":
        m[keys.EVAL_BPD] = q
        m[keys.EVAL_NLL] = q * d * math.log(2)
        m[keys.EVAL_VAL_BPD] = q * 0.99
        if dequant == "variational":
            m[keys.EVAL_BPD_IW] = q - 0.03
    else:
        m[keys.EVAL_NLL] = q
        m[keys.EVAL_VAL_NLL] = q * 0.99
        if ds.entropy is not None:
            m[keys.EVAL_NLL_GAP] = q - ds.entropy

    def jitter():
        return math.exp(0.05 * seed_rng.standard_normal())

    per_pass = (0.2 + spec["ms"] * d) * batch / 256
    dens_passes = d if spec["dens"] == "D" else spec["dens"]
    samp_passes = d if spec["samp"] == "D" else spec["samp"]
    forward = per_pass * dens_passes * jitter()
    logdet = spec["share"] * forward
    m[keys.PERF_DENSITY_MS] = forward * 1.05
    m[keys.PERF_FORWARD_NOLOGDET_MS] = forward - logdet
    m[keys.PERF_LOGDET_MS] = logdet
    m[keys.PERF_LOGDET_SHARE] = logdet / forward
    m[keys.PERF_INVERSE_MS] = per_pass * samp_passes * jitter()
    m[keys.PERF_SAMPLE_MS] = m[keys.PERF_INVERSE_MS] * 1.1
    m[keys.PERF_SAMPLE_THROUGHPUT] = batch / (m[keys.PERF_SAMPLE_MS] / 1000)
    m[keys.PERF_TRAIN_STEP_MS] = 3 * forward * jitter()
    m[keys.PERF_PEAK_MEM_MB] = 20 + 0.05 * d * batch / 256 * jitter()
    m[keys.PERF_BATCH] = float(batch)
    for key in keys.TIMED_MS:  # the blocks' spread: a few timings noisier than 10 %
        median, iqr, blocks = keys.spread_keys(key)
        base = m[keys.PERF_FORWARD_NOLOGDET_MS] if key == keys.PERF_LOGDET_MS else m[key]
        m[median] = m[key] * 1.02 if key != keys.PERF_LOGDET_MS else m[key]
        m[iqr] = base * float(seed_rng.uniform(0.01, 0.14))
        m[blocks] = 10.0 if key != keys.PERF_LOGDET_MS else 5.0
    m[keys.PERF_CONTENDED] = float(seed_rng.random() < 0.2)
    m[keys.PERF_OTHERS_CPUS] = 1.2 if m[keys.PERF_CONTENDED] else 0.1
    m[keys.PERF_SLOWDOWN] = 1.3 if m[keys.PERF_CONTENDED] else 1.02  # the canary (no draw)
    inv = spec["inv"] * math.exp(0.5 * seed_rng.standard_normal())
    m[keys.STAB_INV_ERR_MAX] = inv
    m[keys.STAB_INV_ERR_MEAN] = inv / 10
    m[keys.STAB_LOGDET_MEAN] = float(seed_rng.normal(-2, 0.3))
    m[keys.STAB_LOGDET_STD] = abs(float(seed_rng.normal(0.5, 0.1)))
    m[keys.STAB_LOGDET_MIN] = m[keys.STAB_LOGDET_MEAN] - 3
    m[keys.STAB_LOGDET_MAX] = m[keys.STAB_LOGDET_MEAN] + 3
    m[keys.STAB_SATURATED_SHARE] = {"nsf-coupling": 0.02, "realnvp": 0.01}.get(arch, 0.0)
    m[keys.STAB_NONFINITE_STEPS] = float(2 if arch == "glow" and seed_rng.random() < 0.5 else 0)
    m[keys.STAB_GRAD_NORM_MAX] = float(seed_rng.uniform(5, 50))
    m[keys.STAB_GRAD_NORM_MEAN] = m[keys.STAB_GRAD_NORM_MAX] / 8
    m[keys.STAB_LATENT_KS] = 0.02 + 0.01 * (q / QUALITY["gaussian"].get(ds.name, 1)) * 5
    m[keys.STAB_LATENT_KURTOSIS] = float(seed_rng.normal(0.1, 0.05))
    if arch == "glow":
        m[keys.STAB_COND_MAX] = float(seed_rng.uniform(5, 30))
    if arch == "ffjord":
        m[keys.PERF_NFE] = m[keys.STAB_NFE] = float(round(seed_rng.uniform(70, 100)))
    return m


def _curves(final: float, initial: float, steps: int, points: int, step_ms: float,
            discrete: bool, rng: np.random.Generator, stop: int | None = None,
            diverge: bool = False) -> pd.DataFrame:
    """Long curves: train loss / metric / grad norm / lr / wall time, validation metric."""
    step = np.unique(np.linspace(0, steps, points).round().astype("int64"))
    if stop is not None:
        step = step[step <= stop]
    wall = np.cumsum(np.r_[0, np.diff(step)] * step_ms / 1000 * rng.uniform(0.9, 1.1, len(step)))
    metric = final + (initial - final) * np.exp(-step / (steps / 5))
    metric = metric * (1 + 0.01 * rng.standard_normal(len(step)))
    if diverge:
        metric[-1] = np.nan
    lr = 1e-3 * 0.5 * (1 + np.cos(np.pi * step / steps))
    name = keys.TRAIN_BPD if discrete else keys.TRAIN_NLL
    val = keys.VAL_BPD if discrete else keys.VAL_NLL
    parts = [
        (keys.TRAIN_LOSS, step, wall, metric),
        (name, step, wall, metric),
        (keys.TRAIN_GRAD_NORM, step, wall, 20 * np.exp(-step / steps) + rng.random(len(step))),
        (keys.TRAIN_LR, step, wall, lr),
        (keys.TRAIN_WALL_S, step, wall, wall),
        (val, step[::CURVE_EVERY], wall[::CURVE_EVERY], metric[::CURVE_EVERY] * 1.01),
    ]
    return pd.DataFrame(
        {
            "step": np.concatenate([p[1] for p in parts]).astype("int64"),
            "wall_s": np.concatenate([p[2] for p in parts]).astype("float64"),
            "key": np.concatenate([[p[0]] * len(p[1]) for p in parts]).astype(object),
            "value": np.concatenate([p[3] for p in parts]).astype("float64"),
        }
    )


def _log_batched(client: MlflowClient, run_id: str, metrics: list[Metric]) -> None:
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


def fill_suite(
    uri: str,
    suite: str,
    jobs: list[tuple[str, str, str, list[int]]],
    *,
    artifact_root: Path,
    steps: int = 400,
    points: int = 41,
    outcomes: dict[tuple[str, str, str, int], str] | None = None,
    revision: str = "abc1234",
    quality_shift: dict[str, float] | None = None,
    speed_factor: dict[str, float] | None = None,
    device: str = "cpu (1 threads)",
    samples: bool = True,
    histories: bool = True,
    arch_labels: dict[str, str] | None = None,
    data_options: dict[str, str] | None = None,
    runtime: str = "eager",
    compile_s: float = 20.0,
) -> list[RunTruth]:
    """Write one suite: ``jobs`` are (arch, dataset, dequant, seeds) rows.

    ``outcomes`` maps (arch, dataset, dequant, seed) to failed / diverged / killed (default
    finished). ``quality_shift`` adds to an arch's bpd/NLL and ``speed_factor`` multiplies its
    times (to make a regressed revision for the compare tests). ``histories`` also logs the
    curves as metric histories (as the writer does); off, only the Parquet artifact carries
    them (faster, for the scale benchmark). ``arch_labels`` overrides an arch's label;
    ``data_options`` are the data sets' options (params ``data.<option>``). A ``runtime``
    other than eager tags the runs with it (and its params), records ``compile_s`` and no
    graph break; with the same suite, arch, data set and seed its metrics are the eager run's
    (times × ``speed_factor``).
    """
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(suite)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        suite, artifact_location=(artifact_root / hashlib.sha1(suite.encode()).hexdigest()[:12])
        .resolve().as_uri(), tags={keys.TAG_SUITE: suite})
    outcomes = outcomes or {}
    truths: list[RunTruth] = []
    tmp = Path(tempfile.mkdtemp(prefix="synth-"))
    for arch, dname, dequant, seeds in jobs:
        ds = DATASETS[dname]
        spec = ARCHS[arch]
        for seed in seeds:
            rng = np.random.default_rng(zlib.crc32(f"{suite}|{arch}|{dname}|{dequant}|{seed}"
                                                   .encode()))
            status = outcomes.get((arch, dname, dequant, seed), keys.STATUS_FINISHED)
            batch = 256 if ds.kind == "continuous" else 128
            label = (arch_labels or {}).get(arch, spec["label"])
            params = {
                "arch.name": arch, "data.name": dname, "data.kind": ds.kind,
                "data.dims": str(ds.dims), "data.levels": str(ds.levels),
                "dequant.scheme": dequant, "seed": str(seed), "train.steps": str(steps),
                "train.minutes": "5.0", "train.batch_size": str(batch), "train.optimizer": "adam",
                "train.lr": "0.001", "train.schedule": "cosine", "train.clip": "5.0",
                "eval.batch_size": "1024", "timing.batch_size": str(batch),
                "timing.min_run_time": "0.2", "resources.cpus": "1", "resources.gpus": "0",
                "data.fingerprint": hashlib.sha1(dname.encode()).hexdigest()[:16],
                "flow.params": str(
                    1000 * (ds.dims + 10) * (3 if arch != "gaussian" else 0) + 2 * ds.dims
                ),
            }
            if arch == "maf":
                params["arch.hidden"] = "128"
            params.update({f"data.{k}": v for k, v in (data_options or {}).items()})
            identity = [suite, arch, dname, dequant, seed, data_options]
            if runtime != "eager":
                params.update({"runtime.name": runtime, "runtime.mode": "default",
                               "runtime.shapes": "dynamic"})
                identity.append(runtime)
            key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()
                                 ).hexdigest()[:16]
            tags = {
                keys.TAG_SUITE: suite, keys.TAG_KEY: key, keys.TAG_ARCH: arch,
                keys.TAG_ARCH_LABEL: label, keys.TAG_DATASET: dname, keys.TAG_DEQUANT: dequant,
                keys.TAG_SEED: str(seed), keys.TAG_STATUS: status, keys.TAG_DEVICE: device,
                keys.TAG_TORCH: "2.13.0+cpu", keys.TAG_REVISION: revision,
                "nfbench.timing.threads": "1",
            }
            if runtime != "eager":
                tags[keys.TAG_RUNTIME] = runtime
            if arch in REFERENCE_ROWS:  # as the job tags them, from the registry's metadata
                tags[keys.TAG_REFERENCE] = keys.REFERENCE_YES
            if status == keys.STATUS_FAILED:
                tags[keys.TAG_ERROR] = ("Traceback (most recent call last):\n  File \"job.py\"\n"
                                        f"RuntimeError: out of memory <in> 'coupling' of {suite}")
            rt = "" if runtime == "eager" else f"·{runtime}"
            run = client.create_run(exp_id, run_name=f"{label}·{dname}·{dequant}{rt}·s{seed}",
                                    tags=tags)
            run_id = run.info.run_id
            client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
            metrics = _finals(arch, ds, dequant, rng, batch)
            shift = (quality_shift or {}).get(arch, 0.0)
            factor = (speed_factor or {}).get(arch, 1.0)
            for k in list(metrics):
                if k in (keys.EVAL_BPD, keys.EVAL_NLL, keys.EVAL_BPD_IW, keys.EVAL_NLL_GAP):
                    metrics[k] += shift
                elif k.endswith("_ms"):
                    metrics[k] *= factor
                elif k == keys.PERF_SAMPLE_THROUGHPUT:
                    metrics[k] /= factor
            if runtime != "eager" and status == keys.STATUS_FINISHED:
                metrics.update({keys.PERF_COMPILE_S: compile_s, keys.PERF_GRAPH_BREAKS: 0.0,
                                keys.PERF_RECOMPILES: 0.0})
            discrete = ds.kind == "discrete"
            initial = QUALITY["gaussian"][dname] * 1.5 if dname in QUALITY["gaussian"] else 5.0
            final = metrics.get(keys.EVAL_BPD if discrete else keys.EVAL_NLL, 0.0)
            step_ms = metrics[keys.PERF_TRAIN_STEP_MS]
            in_parquet = True
            if status == keys.STATUS_FINISHED:
                metrics[keys.EVAL_BEST_STEP] = float(steps)
                curves = _curves(final, initial, steps, points, step_ms, discrete, rng)
            elif status == keys.STATUS_DIVERGED:
                metrics = {k: v for k, v in metrics.items() if k.startswith("stab/")}
                metrics[keys.STAB_NONFINITE_STEPS] = 50.0
                curves = _curves(1.0, initial, steps, points, step_ms, discrete, rng,
                                 stop=steps // 2, diverge=True)
            elif status == keys.STATUS_KILLED:
                metrics = {}
                curves = _curves(1.0, initial, steps, points, step_ms, discrete, rng,
                                 stop=steps // 4)
            else:  # failed: a few steps logged as histories, no Parquet artifact
                metrics, in_parquet = {}, False
                curves = _curves(1.0, initial, steps, points, step_ms, discrete, rng,
                                 stop=steps // 10)
            if status != keys.STATUS_FAILED:
                metrics[keys.TRAIN_STEPS_DONE] = float(curves["step"].max())
                metrics[keys.TRAIN_SECONDS] = float(curves["wall_s"].max())
            now = int(time.time() * 1000)
            batch_metrics = [Metric(k, v, now, 0) for k, v in metrics.items()]
            if histories or not in_parquet:
                batch_metrics += [
                    Metric(k, float(v), now + int(1000 * w), int(s))
                    for k, v, w, s in zip(curves["key"], curves["value"], curves["wall_s"],
                                          curves["step"])
                ]
            _log_batched(client, run_id, batch_metrics)
            run_dir = tmp / run_id
            (run_dir / "checkpoints").mkdir(parents=True)
            (run_dir / keys.ART_CONFIG).write_text(json.dumps(params, indent=1))
            (run_dir / keys.ART_DIAGNOSTICS).write_text(json.dumps(metrics, indent=1))
            (run_dir / keys.ART_CHECKPOINT_BEST).write_bytes(b"synthetic checkpoint")
            if in_parquet:
                curves.to_parquet(run_dir / keys.ART_CURVES, index=False)
            has_samples = samples and status == keys.STATUS_FINISHED
            if has_samples:
                (run_dir / keys.ART_SAMPLES).write_bytes(png_bytes(_samples_image(ds, rng)))
            client.log_artifacts(run_id, str(run_dir))
            mlflow_status = {keys.STATUS_FAILED: "FAILED", keys.STATUS_KILLED: "KILLED"}.get(
                status, "FINISHED")
            client.set_terminated(run_id, status=mlflow_status)
            truths.append(RunTruth(run_id, suite, arch, label, dname, dequant, seed, status,
                                   tags, params, metrics, curves, in_parquet, has_samples))
    return truths
