#!/usr/bin/env python3
"""Reference radiometric scores, computed with numpy alone, for tests/fixtures/metrics.

The Rust evaluation (geosr_raster::evaluate::compare_rasters) must reproduce them; the test
crates/geosr-raster/tests/metrics_reference.rs reads radiometry.json. Pixels are read through
GDAL's command line (ENVI, band sequential), not through geosr.

  .venv/bin/python scripts/reference-radiometry.py

Writes tests/fixtures/metrics/other.tif (a second method standing in for "bicubic": the rounded
mean of hr.tif and pred.tif in columns 0..48, pred pushed as far again from hr beyond) when it is missing, and radiometry.json. Case: border 4, every
band, rows and columns [4, 92).
  bias          mean(pred − hr) per band
  relative_bias bias / mean(hr) per band
  sam_degrees   mean over pixels of acos(<p, h> / (|p| |h|)) in degrees (pixels with both non-zero)
  detail_split  with a = |pred − hr|, t = |other − hr| (vectors over bands) and
                eps = 0.01 * |data ranges|: improvement a < t − eps, hallucination a > t + eps,
                omission otherwise; shares of the pixels compared
"""
import json
import pathlib
import subprocess
import tempfile

import numpy as np

here = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "metrics"


def read(path):
    with tempfile.TemporaryDirectory() as d:
        raw = pathlib.Path(d) / "x.bin"
        subprocess.run(["gdal_translate", "-q", "-of", "ENVI", "-co", "INTERLEAVE=BSQ", "-ot", "Float64", str(path), str(raw)], check=True)
        hdr = (pathlib.Path(d) / "x.hdr").read_text()
        get = lambda key: int(next(l for l in hdr.splitlines() if l.startswith(key)).split("=")[1])
        c, h, w = get("bands"), get("lines"), get("samples")
        return np.fromfile(raw, dtype="<f8").reshape(c, h, w)


hr, pred = read(here / "hr.tif"), read(here / "pred.tif")
other_path = here / "other.tif"
if not other_path.exists():
    other = np.floor((hr + pred) / 2 + 0.5)
    other[:, :, 48:] = np.clip(2 * pred - hr, 0, 65535)[:, :, 48:]
    other = other.astype("<u2")
    with tempfile.TemporaryDirectory() as d:
        raw = pathlib.Path(d) / "other.bin"
        other.tofile(raw)
        c, h, w = other.shape
        (pathlib.Path(d) / "other.hdr").write_text(
            f"ENVI\nsamples = {w}\nlines = {h}\nbands = {c}\nheader offset = 0\nfile type = ENVI Standard\n"
            "data type = 12\ninterleave = bsq\nbyte order = 0\n")
        subprocess.run(["gdal_translate", "-q", "-of", "GTiff", str(raw), str(other_path)], check=True)
other = read(other_path)

s = (slice(None), slice(4, 92), slice(4, 92))
h, p, q = hr[s], pred[s], other[s]
ranges = h.reshape(h.shape[0], -1).max(axis=1) - h.reshape(h.shape[0], -1).min(axis=1)
bias = (p - h).mean(axis=(1, 2))
relative = bias / h.mean(axis=(1, 2))
dot = (p * h).sum(axis=0)
np_, nh = np.sqrt((p * p).sum(axis=0)), np.sqrt((h * h).sum(axis=0))
ok = (np_ > 0) & (nh > 0)
sam = np.degrees(np.arccos(np.clip(dot[ok] / (np_[ok] * nh[ok]), -1, 1))).mean()
a = np.sqrt(((p - h) ** 2).sum(axis=0))
t = np.sqrt(((q - h) ** 2).sum(axis=0))
eps = 0.01 * np.sqrt((ranges ** 2).sum())
n = a.size
improvement = float((a < t - eps).sum() / n)
hallucination = float((a > t + eps).sum() / n)
ref = {
    "numpy": np.__version__,
    "full": {
        "bias": bias.tolist(),
        "relative_bias": relative.tolist(),
        "sam_degrees": float(sam),
        "detail_split": {"improvement": improvement, "omission": 1 - improvement - hallucination,
                         "hallucination": hallucination},
    },
}
(here / "radiometry.json").write_text(json.dumps(ref, indent=2) + "\n")
print(json.dumps(ref, indent=2))
