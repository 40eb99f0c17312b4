#!/usr/bin/env python3
"""Reference PSNR/SSIM values from scikit-image for tests/fixtures/metrics (hr.tif, pred.tif).

The Rust evaluation (geosr::evaluate::compare_rasters) must reproduce these numbers; the test
tests/metrics_reference.rs reads reference.json. Needs scikit-image and tifffile, e.g. in the
opt-in full torch venv:  GEOSR_TORCH_PY=1 scripts/setup
  .venv-torchpy/bin/pip install scikit-image==0.25.2 tifffile
  .venv-torchpy/bin/python scripts/reference-metrics.py

Cases (border = 4 pixels, the ×4 convention):
  full:  every band, rows and columns [4, 92)
  wedge: as if columns 0..20 were nodata: rows [4, 92), columns [20, 92)
Data range per band = max - min of the HR pixels compared, as geosr defines it.
"""
import json
import pathlib

import numpy as np
import skimage
import tifffile
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

here = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "metrics"
hr = tifffile.imread(here / "hr.tif").astype(np.float64)  # H, W, C (pixel-interleaved)
pred = tifffile.imread(here / "pred.tif").astype(np.float64)
if hr.ndim == 3 and hr.shape[0] == 3 and hr.shape[-1] != 3:
    hr, pred = hr.transpose(1, 2, 0), pred.transpose(1, 2, 0)

def case(rows, cols):
    out = {"psnr": [], "ssim": [], "data_range": []}
    for b in range(hr.shape[2]):
        a = hr[rows, cols, b]
        p = pred[rows, cols, b]
        r = float(a.max() - a.min())
        out["data_range"].append(r)
        out["psnr"].append(float(peak_signal_noise_ratio(a, p, data_range=r)))
        out["ssim"].append(float(structural_similarity(
            a, p, data_range=r, gaussian_weights=True, sigma=1.5, use_sample_covariance=True)))
    return out

ref = {
    "scikit_image": skimage.__version__,
    "full": case(slice(4, 92), slice(4, 92)),
    "wedge": case(slice(4, 92), slice(20, 92)),
}
(here / "reference.json").write_text(json.dumps(ref, indent=2) + "\n")
print(json.dumps(ref, indent=2))
