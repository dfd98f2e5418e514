"""Benchmark the foundation model on CPU: ``python bench/bench_foundation.py [--checkpoint FILE]``.

Prints ECGs/s for classification (eager and TorchScript, batch 1 and 32), ECGs/s for report
generation with the scripted greedy generator (batch 1 and 32), decoder tokens/s, preprocessing
time per ECG, parameter counts and file sizes. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ecg_models.foundation import EOS_ID, PAD_ID, FoundationGreedyGenerator, from_checkpoint
from inference.preprocessing import foundation_inputs

REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = REPO_ROOT / "ecg_models" / "weights"


def _time(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=WEIGHTS / "foundation.pt")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = from_checkpoint(args.checkpoint)
    gen_eager = FoundationGreedyGenerator(model).eval()
    gen = torch.jit.script(gen_eager)
    g = torch.Generator().manual_seed(0)
    res: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch {torch.__version__}"
    }
    with torch.no_grad():
        for b in (1, 32):
            x = torch.randn(b, 12, 1000, generator=g) * 0.2
            m = torch.ones(b, 12, dtype=torch.bool)
            traced = torch.jit.trace(model, (x, m))
            reps = 20 if b == 1 else 5
            res[f"classify_eager_ecg_per_s_b{b}"] = round(b / _time(lambda: model(x, m), reps), 1)  # noqa: B023
            res[f"classify_torchscript_ecg_per_s_b{b}"] = round(b / _time(lambda: traced(x, m), reps), 1)  # noqa: B023
            # A conditioned decoder also takes the measured-findings vector (timing only: all zero).
            meas = torch.zeros(b, model.cfg.n_measured) if model.cfg.condition_on_measured else None
            ids = gen(x, m, meas)
            n_tokens = int((ids != PAD_ID).sum())  # generated tokens incl. EOS
            t = _time(lambda: gen(x, m, meas), 3)  # noqa: B023
            res[f"report_ecg_per_s_b{b}"] = round(b / t, 2)
            res[f"decoder_tokens_per_s_b{b}"] = round(n_tokens / t, 1)
            res[f"mean_tokens_per_report_b{b}"] = round(n_tokens / b, 1)
            res[f"all_reports_end_with_eos_b{b}"] = bool((ids == EOS_ID).any(1).all())
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((12, 5000))
    res["preprocess_ms_per_ecg_500hz"] = round(1000 * _time(lambda: foundation_inputs(raw, 500), 20), 2)
    res["params_total"] = sum(p.numel() for p in model.parameters())
    res["params_encoder"] = sum(p.numel() for p in model.encoder.parameters())
    res["params_decoder"] = sum(p.numel() for p in model.decoder.parameters())
    res["params_cpc_pretraining_only"] = sum(p.numel() for p in model.cpc.parameters())
    for name in ("foundation.pt", "foundation_tokenizer.json", "resnet1d_baseline.pt"):
        path = WEIGHTS / name
        if path.exists():
            res[f"file_kb_{name}"] = round(path.stat().st_size / 1024, 1)
    for key, value in res.items():
        print(f"{key}: {value}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
