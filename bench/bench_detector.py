"""Benchmark the anomaly detector and its conv-autoencoder baseline: ``python bench/bench_detector.py``.

Prints, per model and device: parameters, forward passes and FLOPs per ECG, inference ECGs/s at
batch 1 and 32 (model only, and preprocessing alone), and training seconds per epoch
(extrapolated from timed steps at batch 32 over the 980 training normals). Uses synthetic inputs
of the exact serving shapes, so it runs without ../shared. The published reference is listed
beside ours (docs/architecture.md §4: ~7.1 M parameters, ~30 sequential forward passes per ECG).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from ecg_models.anomaly_detector import DetectorConfig, build_detector, from_checkpoint  # noqa: E402
from ecg_models.baselines import ConvAutoencoder, ConvAutoencoderConfig  # noqa: E402
from inference.preprocessing import detector_inputs, stack_detector_inputs  # noqa: E402

TRAIN_NORMALS = 980  # training normals of the shipped run (folds 1–8 + ptb-xl-extra train)
PUBLISHED = {"params": 7_100_000, "forward_passes_per_ecg": 30}


def synthetic_batch(batch: int, device: torch.device) -> list[torch.Tensor]:
    """Return forward arguments for ``batch`` preprocessed synthetic ECGs."""
    t = np.arange(5000) / 500.0
    x = sum(np.exp(-0.5 * ((t - r) / 0.012) ** 2) for r in np.arange(0.4, 10, 0.85))
    signal = np.tile(x, (12, 1)) * np.linspace(0.5, 1.5, 12)[:, None]
    arrays = stack_detector_inputs([detector_inputs(signal, 500)] * batch)
    keys = ("record", "beats", "beat_valid", "lead_valid", "sample_valid", "r_track")
    return [torch.from_numpy(arrays[k]).to(device) for k in keys]


def time_forward(model: torch.nn.Module, batch: int, device: torch.device, repeats: int) -> float:
    """Return ECGs per second of the model forward at ``batch``."""
    args = synthetic_batch(batch, device)
    with torch.no_grad():
        model(*args)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            model(*args)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def flops_per_ecg(model: torch.nn.Module) -> float:
    """Return forward FLOPs for one ECG (counted by torch's FlopCounterMode)."""
    args = synthetic_batch(1, torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.cpu()(*args)
    return float(counter.get_total_flops())


def train_seconds_per_epoch(model: torch.nn.Module, device: torch.device, steps: int) -> float:
    """Time ``steps`` optimizer steps at batch 32 and extrapolate to one epoch."""
    args = synthetic_batch(32, device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    targets = (torch.zeros(32, 7, device=device), torch.ones(32, 7, dtype=torch.bool, device=device))

    def step() -> None:
        if isinstance(model, ConvAutoencoder):
            loss = model.loss(args[0], args[3], args[4])
        else:
            loss, _ = model.loss(*args, *targets)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.eval()
    return (time.perf_counter() - start) / steps * (TRAIN_NORMALS // 32)


def preprocessing_per_second(rounds: int = 3) -> tuple[float, str]:
    """Return (ECGs/s of ``detector_inputs``, what was timed), after one warm-up call.

    Uses the committed sample ECGs (real PTB-XL, 10 s, 500 Hz) when present, else a synthetic ECG.
    """
    samples = REPO_ROOT / "samples" / "ptbxl"
    if (samples / "ptbxl_database.csv").exists():
        from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record

        index = load_ptbxl_index(samples)
        signals = [load_ptbxl_record(samples, row).signal for _, row in index.iterrows()]
        what = f"{len(signals)} sample PTB-XL ECGs"
    else:
        t = np.arange(5000) / 500.0
        x = sum(np.exp(-0.5 * ((t - r) / 0.012) ** 2) for r in np.arange(0.4, 10, 0.85))
        signals = [np.tile(x, (12, 1)) + np.random.default_rng(0).normal(0, 0.01, (12, 5000))]
        what = "a synthetic ECG"
    detector_inputs(signals[0], 500)  # warm-up: neurokit2 imports and caches on first use
    start = time.perf_counter()
    for _ in range(rounds):
        for signal in signals:
            detector_inputs(signal, 500)
    return rounds * len(signals) / (time.perf_counter() - start), what


def main() -> None:
    """Run every benchmark and print one JSON object per model and device."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "ecg_models" / "weights" / "detector.pt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = from_checkpoint(args.checkpoint) if args.checkpoint.exists() else build_detector(DetectorConfig()).eval()
    models = {"detector": detector, "conv_autoencoder": ConvAutoencoder(ConvAutoencoderConfig()).eval()}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads {args.threads}, cuda {torch.cuda.is_available()}"
    )
    rate, what = preprocessing_per_second()
    print(f"preprocessing (detector_inputs, 10 s 500 Hz 12-lead, {what}): {rate:.1f} ECG/s")
    for name, model in models.items():
        flops = flops_per_ecg(model)
        for device in devices:
            model.to(device)
            row = {
                "model": name,
                "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu x{args.threads} threads",
                "params": sum(p.numel() for p in model.parameters()),
                "forward_passes_per_ecg": 1,
                "gflops_per_ecg": round(flops / 1e9, 3),
                "ecg_per_s_batch1": round(time_forward(model, 1, device, args.repeats * 4), 2),
                "ecg_per_s_batch32": round(time_forward(model, 32, device, args.repeats), 2),
                "train_s_per_epoch": round(train_seconds_per_epoch(model, device, args.train_steps), 1),
            }
            if name == "detector":
                row["published"] = PUBLISHED
            print(json.dumps(row))
            model.cpu()


if __name__ == "__main__":
    main()
