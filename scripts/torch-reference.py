#!/usr/bin/env python3
"""PyTorch eager reference for geosr's benchmark: the same U-Net, batch and loss, trained for N
steps in plain PyTorch; and inference through ONNX Runtime (the engine unet-infer uses, on the
model.onnx geosr exported) against PyTorch eager with the same weights.

Needs the opt-in full torch venv:  GEOSR_TORCH_PY=1 scripts/setup  (then .venv-torchpy/bin/python).
Run by scripts/bench-pytorch, which adds geosr's own numbers and writes the comparison table.

  .venv-torchpy/bin/python scripts/torch-reference.py --model runs/<run> --steps 110 --out runs/bench/pytorch.json

With --kit (scripts/gpu-proof on a GPU host) it trains the configurations of the GPU kit
(gpu-kit/configs.json) on its crop and VGG layers, on --device, and times them; nothing else.
"""
import argparse
import json
import pathlib
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.a = nn.Conv2d(cin, cout, 3, padding=1)
        self.b = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        # tch's leaky_relu: negative slope 0.01, as PyTorch's default
        return F.leaky_relu(self.b(F.leaky_relu(self.a(x))))


class UNet(nn.Module):
    """crates/geosr-torch/src/unet.rs, layer for layer and with the same parameter names."""

    def __init__(self, bands, factor, depth, width, upsample, skip):
        super().__init__()
        assert upsample == "pixelshuffle", "the reference covers the default pixel-shuffle tail"
        self.factor, self.depth, self.skip = factor, depth, skip
        w = lambda level: width << level
        self.head = nn.Conv2d(bands, w(0), 3, padding=1)
        for l in range(depth):
            setattr(self, f"enc{l}", Block(w(l), w(l)))
            setattr(self, f"down{l}", nn.Conv2d(w(l), w(l + 1), 3, padding=1, stride=2))
            setattr(self, f"up{l}", nn.Conv2d(w(l + 1), w(l), 3, padding=1))
            setattr(self, f"dec{l}", Block(2 * w(l), w(l)))
        self.mid = Block(w(depth), w(depth))
        self.tail = nn.Conv2d(w(0), bands * factor * factor, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, lr):
        x = F.leaky_relu(self.head(lr))
        skips = []
        for l in range(self.depth):
            x = getattr(self, f"enc{l}")(x)
            skips.append(x)
            x = F.leaky_relu(getattr(self, f"down{l}")(x))
        x = self.mid(x)
        for l in reversed(range(self.depth)):
            x = F.interpolate(x, size=skips[l].shape[2:], mode="nearest")
            x = F.leaky_relu(getattr(self, f"up{l}")(x))
            x = getattr(self, f"dec{l}")(torch.cat([x, skips[l]], 1))
        residual = F.pixel_shuffle(self.tail(x), self.factor)
        if self.skip == "none":
            return residual
        base = F.interpolate(lr, scale_factor=self.factor, mode=self.skip, align_corners=False)
        return base + residual


class Vgg(nn.Module):
    """VGG-16 up to relu2_2, weights from weights/vgg16.safetensors (torchvision names)."""

    def __init__(self, path):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU())
        w = load_file(str(path))
        self.features.load_state_dict({k[len("features."):]: v for k, v in w.items()
                                       if int(k.split(".")[1]) < 9})
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, rgb01):
        mean = torch.tensor([103.939, 116.779, 123.68], device=rgb01.device).view(1, 3, 1, 1)
        return self.features(rgb01.flip(1) * 255.0 - mean)


def chips(n, size, seed):
    """Random HR chips of the demo crop, normalised per band by its 1st/99th percentiles."""
    import tifffile
    img = tifffile.imread(ROOT / "data/demo/landsat8-224078-crop.tif").astype(np.float32)
    img = img.transpose(2, 0, 1)
    lo = np.percentile(img, 1, axis=(1, 2), keepdims=True)
    hi = np.percentile(img, 99, axis=(1, 2), keepdims=True)
    img = (img - lo) / (hi - lo)
    rng = np.random.default_rng(seed)
    out = np.empty((n, img.shape[0], size, size), np.float32)
    for i in range(n):
        y, x = rng.integers(0, img.shape[1] - size), rng.integers(0, img.shape[2] - size)
        out[i] = img[:, y:y + size, x:x + size]
    return torch.from_numpy(out)


def train_step(net, vgg, opt, hr, factor, feature_weight):
    """One step as geosr takes it: the dataflow's degradation (bilinear with antialiasing, GDAL's
    kernel), L1 plus the VGG feature loss on the tiles' red, green, blue, Adam. Returns the loss."""
    rgb = [2, 1, 0]  # the tiles are blue, green, red
    lr = F.interpolate(hr, scale_factor=1 / factor, mode="bilinear", antialias=True,
                       align_corners=False)
    pred = net(lr)
    with torch.no_grad():
        fh = vgg(hr[:, rgb])
    loss = F.l1_loss(pred, hr) + feature_weight * F.mse_loss(vgg(pred[:, rgb]), fh)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def train(card, steps, batch, chip, feature_weight):
    a = card["architecture"]
    net = UNet(a["bands"], a["factor"], a["depth"], a["width"], a["upsample"], a["skip"])
    vgg = Vgg(ROOT / "weights/vgg16.safetensors")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    pool = chips(batch * 20, chip, 0)
    done = []
    for step in range(steps):
        idx = torch.randint(0, pool.shape[0], (batch,))
        loss = train_step(net, vgg, opt, pool[idx], a["factor"], feature_weight)
        done.append(time.perf_counter())
    if len(done) < 3:
        raise SystemExit("torch-reference: give --steps 3 or more (the first steps are not timed)")
    skip = min(10, len(done) - 2)
    secs = done[-1] - done[skip]
    return {"steps": steps, "steps_timed": len(done) - 1 - skip, "seconds": secs,
            "steps_per_s": (len(done) - 1 - skip) / secs, "final_loss": float(loss.detach())}


def infer(card, model_dir, batch, tile, repeats, threads):
    import onnxruntime as ort
    a = card["architecture"]
    net = UNet(a["bands"], a["factor"], a["depth"], a["width"], a["upsample"], a["skip"])
    net.load_state_dict(load_file(str(model_dir / "model.safetensors")))
    net.eval()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), opts,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = chips(batch, tile, 1)
    with torch.inference_mode():
        ref = net(x).numpy()
    got = sess.run(None, {name: x.numpy()})[0]
    out_mp = batch * (tile * a["factor"]) ** 2 / 1e6
    result = {"batch": batch, "lr_tile": tile, "max_abs_diff_ort_vs_torch": float(np.abs(ref - got).max())}
    for engine in ["ort", "torch"]:
        times = []
        for r in range(repeats + 2):
            t = time.perf_counter()
            if engine == "ort":
                sess.run(None, {name: x.numpy()})
            else:
                with torch.inference_mode():
                    net(x)
            if r >= 2:
                times.append(time.perf_counter() - t)
        result[f"{engine}_mp_per_s"] = out_mp * repeats / sum(times)
    return result


def train_kit(cfg, crop, vgg_path, steps, device, feature_weight):
    """One configuration of the GPU kit: the loop of train(), with the loss read back every step
    (as geosr does) so that the timestamps are honest on an asynchronous device."""
    torch.manual_seed(0)
    net = UNet(3, cfg["factor"], cfg["depth"], cfg["width"], "pixelshuffle", "bicubic").to(device)
    vgg = Vgg(vgg_path).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    size, batch = cfg["hr_chip"], cfg["batch"]
    rng = np.random.default_rng(1)
    n = batch * 20
    ys = rng.integers(0, crop.shape[1] - size + 1, n)
    xs = rng.integers(0, crop.shape[2] - size + 1, n)
    pool = torch.stack([crop[:, y:y + size, x:x + size] for y, x in zip(ys, xs)]).to(device)
    done, losses = [], []
    for _ in range(steps):
        hr = pool[torch.randint(0, n, (batch,), device=device)]
        loss = train_step(net, vgg, opt, hr, cfg["factor"], feature_weight)
        losses.append(float(loss.detach()))
        done.append(time.perf_counter())
    skip = min(10, len(done) - 2)
    secs = done[-1] - done[skip]
    return {"steps": steps, "steps_per_s": (len(done) - 1 - skip) / secs,
            "first_loss": losses[0], "last_loss": losses[-1]}


def kit_main(args):
    from safetensors.torch import load_file as load
    kit = pathlib.Path(args.kit)
    plan = json.loads((kit / "configs.json").read_text())
    crop = load(str(kit / "crop.safetensors"))["hr"].float()
    device = torch.device(args.device)
    label = "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"
    result = {"torch": torch.__version__, "device": label, "configs": {},
              "card": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    for i, cfg in enumerate(plan["configs"]):
        steps = plan["train_steps"] if i == 0 else plan["large_steps"]
        run = train_kit(cfg, crop, kit / "vgg16-relu2_2.safetensors", steps, device,
                        args.feature_weight)
        result["configs"].setdefault(cfg["name"], {})[label] = run
        print(cfg["name"], json.dumps(run), flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a geosr run directory (model.json, model.safetensors, model.onnx)")
    ap.add_argument("--kit", help="a GPU kit folder (scripts/gpu-kit): train its configurations only")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=110)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--chip", type=int, default=64)
    ap.add_argument("--feature-weight", type=float, default=2e-7)
    ap.add_argument("--infer-batch", type=int, default=4)
    ap.add_argument("--infer-tile", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.kit:
        return kit_main(args)
    if not args.model:
        raise SystemExit("torch-reference: give --model or --kit")
    torch.manual_seed(0)
    model_dir = pathlib.Path(args.model)
    card = json.loads((model_dir / "model.json").read_text())
    result = {
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "train": train(card, args.steps, args.batch, args.chip, args.feature_weight),
        "infer": infer(card, model_dir, args.infer_batch, args.infer_tile, args.repeats, args.threads),
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
