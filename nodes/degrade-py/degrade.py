#!/usr/bin/env python3
"""degrade-py: the `degrade` stage as a Python dora node (numpy + pyarrow).

Bilinear downsampling of HR tile batches by `factor` with GDAL's antialiasing (the triangle
kernel widened by the factor; taps outside the tile dropped and the rest renormalised), or
OpenCV's INTER_LINEAR with `antialias: false`, then optional Gaussian noise (`noise_std`).
Every input `hr...` is answered on the output `lr...` of the same suffix, with the geometry
updated exactly as geosr's Rust stages do (docs/tile-contract.md). It proves the tile contract
is language-neutral: graphs/train-python.yml runs it in place of the Rust `degrade` node.

Settings, as the Rust stages read them: the YAML file named by GEOSR_SETTINGS, then GEOSR_<KEY>
environment variables. Blur and JPEG are refused (the Rust stage has them).
"""
import json
import os
import pathlib
import sys

import numpy as np
import pyarrow as pa
import yaml
from dora import Node

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROOT = pathlib.Path(os.environ.get("GEOSR_ROOT", ROOT))
PATHS = ("run_dir", "log_dir", "model", "resume")
KEYS = {"factor": 4, "antialias": True, "noise_std": 0.0, "blur_sigma": 0.0,
        "jpeg_quality": None, "run_dir": str(ROOT / "runs/train"),
        "log_dir": str(ROOT / "runs/logs"), "model": None, "resume": None}


def settings():
    s = dict(KEYS)
    path = os.environ.get("GEOSR_SETTINGS")
    if path:
        path = pathlib.Path(path).resolve()
        loaded = yaml.safe_load(path.read_text()) or {}
        for k, v in loaded.items():
            if k in PATHS and v:
                v = str((path.parent / v).resolve())
            if k in s:
                s[k] = v
    for k in s:
        v = os.environ.get(f"GEOSR_{k.upper()}")
        if v is not None:
            s[k] = str(pathlib.Path(v).resolve()) if k in PATHS else yaml.safe_load(v)
    if s["model"]:
        # evaluation: degrade exactly as the model was trained
        card = json.loads((pathlib.Path(s["model"]) / "model.json").read_text())
        s.update({k: card["degradation"][k] for k in
                  ("factor", "antialias", "noise_std", "blur_sigma", "jpeg_quality")})
    if s["blur_sigma"] or s["jpeg_quality"] is not None:
        sys.exit("degrade-py: blur_sigma and jpeg_quality are not implemented here; use the Rust degrade stage")
    if s["factor"] not in (2, 3, 4, 8):
        sys.exit(f"degrade-py: setting `factor`: {s['factor']} is not one of 2, 3, 4, 8")
    return s


def bilinear_matrix(n_in, n_out, antialias):
    """Row i holds the weights of output sample i (geosr::degrade::bilinear_taps)."""
    m = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    stretch = scale if antialias and scale > 1 else 1.0
    for i in range(n_out):
        centre = (i + 0.5) * scale - 0.5
        if antialias:
            lo = max(int(np.floor(centre - stretch) + 1), 0)
            hi = min(int(np.ceil(centre + stretch) - 1), n_in - 1)
            j = np.arange(lo, hi + 1)
            w = np.maximum(1 - np.abs((j - centre) / stretch), 0)
            m[i, lo:hi + 1] = w / w.sum()
        else:
            c = max(centre, 0.0)
            j0 = min(int(np.floor(c)), n_in - 1)
            if j0 + 1 < n_in:
                m[i, j0], m[i, j0 + 1] = 1 - (c - j0), c - j0
            else:
                m[i, j0] = 1.0
    return m.astype(np.float32)


def degrade(batch, s):
    # A RecordBatch view applies the struct's offset (StructArray.field() would not).
    batch = pa.RecordBatch.from_struct_array(batch)
    n = batch.num_rows
    col = batch.column
    c, h, w, f_in = (col(k)[0].as_py() for k in ("bands", "height", "width", "factor"))
    f = int(s["factor"])
    if h % f or w % f:
        raise ValueError(f"tile {w}x{h} is not a multiple of factor {f}")
    pixels = col("pixels")
    if pixels.type.value_type != pa.float32():
        raise ValueError(
            f"`pixels` are {pixels.type.value_type}; this stage reads normalised float32 tiles"
        )
    hr = pixels.flatten().to_numpy(zero_copy_only=False).reshape(n, c, h, w)
    rows = bilinear_matrix(h, h // f, s["antialias"])
    cols = bilinear_matrix(w, w // f, s["antialias"])
    # columns first, then rows, in float32 like the Rust stage
    lr = np.einsum("nchw,pw->nchp", hr, cols, optimize=True)
    lr = np.einsum("oh,nchp->ncop", rows, lr, optimize=True).astype(np.float32)
    if s["noise_std"]:
        rng = np.random.default_rng(col("batch_id")[0].as_py())
        lr += rng.normal(0, s["noise_std"], lr.shape).astype(np.float32)
    h2, w2 = h // f, w // f
    # geometry: pixel sizes grow by the factor; `factor` = source pixels per tile pixel
    gt = col("geotransform").flatten().to_numpy(zero_copy_only=False).reshape(n, 6).copy()
    gt[:, [1, 2, 4, 5]] *= f
    item = lambda t: pa.field("item", t, nullable=False)
    columns = {
        "height": pa.array([h2] * n, pa.uint32()),
        "width": pa.array([w2] * n, pa.uint32()),
        "factor": pa.array([max(f_in * w // w2, 1)] * n, pa.uint32()),
        "geotransform": pa.FixedSizeListArray.from_arrays(
            pa.array(gt.ravel(), pa.float64()), type=pa.list_(item(pa.float64()), 6)),
        "pixels": pa.FixedSizeListArray.from_arrays(
            pa.array(lr.ravel(), pa.float32()), type=pa.list_(item(pa.float32()), c * h2 * w2)),
        "loss": pa.nulls(n, pa.float64()),
    }
    fields = list(batch.schema)
    arrays = [columns.get(fl.name, col(fl.name)) for fl in fields]
    fields = [pa.field(fl.name, columns[fl.name].type, fl.nullable) if fl.name in columns else fl
              for fl in fields]
    return pa.StructArray.from_arrays(arrays, fields=fields)


def main():
    s = settings()
    node = Node()
    counts = {"stage": "degrade", "inputs": {}, "outputs": {}}
    add = lambda side, k, n: counts[side].setdefault(k, [0, 0]).__setitem__(
        slice(None), [counts[side][k][0] + 1, counts[side][k][1] + n])
    for event in node:
        if event["type"] == "INPUT":
            iid = event["id"]
            if not iid.startswith("hr"):
                sys.exit(f"degrade-py: input `{iid}` should be named hr or hr_<suffix>")
            batch = event["value"]
            add("inputs", iid, len(batch))
            out_id = "lr" + iid[2:]
            node.send_output(out_id, degrade(batch, s))
            add("outputs", out_id, len(batch))
        elif event["type"] == "STOP":
            break
    # the same counts file as the Rust stages, so `geosr summary --graph` checks the edges
    out_dir = pathlib.Path(s["log_dir"] if s["model"] else s["run_dir"]) / "counts"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "degrade.json.tmp"
    tmp.write_text(json.dumps(counts, indent=2))
    tmp.replace(out_dir / "degrade.json")


if __name__ == "__main__":
    main()
