"""Export the foundation model for serving: ``python -m training.foundation_export --out DIR``.

Writes, then checks each against the eager model on a fresh batch (max abs difference printed):

- ``DIR/foundation_classifier.torchscript.pt`` (traced) and ``DIR/foundation_classifier.onnx``
  (dynamic batch): signal (B, 12, 1000) float32, lead_mask (B, 12) bool ->
  abnormal_logit (B,), superclass_logits (B, 5), statement_logits (B, S), embedding (B, 256) (2 * d_model: mean and max pooling);
- ``DIR/foundation_generator.torchscript.pt`` (``torch.jit.script``, the whole greedy loop in
  one call): signal, lead_mask[, measured] -> token_ids (B, max_len) int64 (no BOS; PAD = 0 after
  EOS = 2); ``measured`` (B, K) float32 is required when the checkpoint is conditioned on the
  measured findings (``inference.clinical.conditioning.MEASURED_FINDINGS``) and ignored otherwise;
- ``DIR/foundation_memory.torchscript.pt`` (signal, lead_mask[, measured] -> memory (B, 126 or 127, 128) float32) and
  ``DIR/foundation_decoder.torchscript.pt`` (tokens (B, L) int64 starting with BOS = 1, memory ->
  logits (B, L, V) float32): the parts for beam search outside the model
  (``ecg_models.foundation.beam_search(decoder, memory, max_len)``), checked against eager beam search;
- ``DIR/foundation_tokenizer.json`` (copy of the shipped tokenizer) and ``DIR/foundation_io.json``
  (names, dtypes, shapes, special ids, statement codes, threshold).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_models.foundation import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    FoundationGreedyGenerator,
    FoundationMemory,
    FoundationModel,
    beam_decode,
    beam_search,
    from_checkpoint,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
INPUT_NAMES = ["signal", "lead_mask"]
OUTPUT_NAMES = ["abnormal_logit", "superclass_logits", "statement_logits", "embedding"]


def example_inputs(model: FoundationModel, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs with serving shapes; the second ECG lacks the chest leads."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.cfg.n_leads, model.cfg.n_samples, generator=g) * 0.2
    mask = torch.ones(batch, model.cfg.n_leads, dtype=torch.bool)
    if batch > 1:
        mask[1, 6:] = False
    return x, mask


def export(checkpoint: Path, out_dir: Path, onnx: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Write the artefacts (CPU weights, device-free graphs); return the differences vs eager.

    ``device`` is where the written classifier and generator are loaded and checked.
    """
    model = from_checkpoint(checkpoint)
    cfg = model.cfg
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    args = example_inputs(model)
    result: dict[str, Any] = {}
    with torch.no_grad():
        traced = torch.jit.trace(model, args)
        traced.save(str(out_dir / "foundation_classifier.torchscript.pt"))
        generator = torch.jit.script(FoundationGreedyGenerator(model).eval())
        generator.save(str(out_dir / "foundation_generator.torchscript.pt"))
        check = example_inputs(model, batch=3, seed=1)
        eager = model(*check)
        on_device = tuple(t.to(device) for t in check)
        classifier = torch.jit.load(str(out_dir / "foundation_classifier.torchscript.pt"), map_location=device)
        loaded = classifier(*on_device)
        result["torchscript_classifier_max_abs_diff"] = max(
            float((a - b.cpu()).abs().max()) for a, b in zip(eager, loaded, strict=True)
        )
        measured = torch.eye(3, cfg.n_measured) if cfg.condition_on_measured else None
        ids_eager = FoundationGreedyGenerator(model).eval()(*check, measured)
        generator_file = torch.jit.load(str(out_dir / "foundation_generator.torchscript.pt"), map_location=device)
        ids_script = generator_file(*on_device, None if measured is None else measured.to(device)).cpu()
        result["torchscript_generator_ids_equal"] = bool(torch.equal(ids_eager, ids_script))
        torch.jit.script(FoundationMemory(model).eval()).save(str(out_dir / "foundation_memory.torchscript.pt"))
        torch.jit.script(model.decoder.eval()).save(str(out_dir / "foundation_decoder.torchscript.pt"))
        memory_net = torch.jit.load(str(out_dir / "foundation_memory.torchscript.pt"))
        decoder = torch.jit.load(str(out_dir / "foundation_decoder.torchscript.pt"))
        exported_beam = beam_search(decoder, memory_net(*check, measured), model.cfg.max_len, beam=3)
        result["torchscript_beam_equal"] = exported_beam == beam_decode(model, *check, beam=3, measured=measured)
        if onnx:
            import onnxruntime as ort

            path = out_dir / "foundation_classifier.onnx"
            torch.onnx.export(
                model,
                args,
                str(path),
                input_names=INPUT_NAMES,
                output_names=OUTPUT_NAMES,
                dynamic_axes={n: {0: "batch"} for n in INPUT_NAMES + OUTPUT_NAMES},
                dynamo=False,
            )
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = session.run(None, {n: a.numpy() for n, a in zip(INPUT_NAMES, check, strict=True)})
            result["onnx_classifier_max_abs_diff"] = max(
                float(np.abs(a.numpy() - b).max()) for a, b in zip(eager, got, strict=True)
            )
    tok = checkpoint.parent / ckpt["tokenizer"]
    shutil.copy(tok, out_dir / "foundation_tokenizer.json")
    measured_io = {"measured": ["FP32", [-1, cfg.n_measured]]} if cfg.condition_on_measured else {}
    io = {
        "classifier": {
            "inputs": {"signal": ["FP32", [-1, cfg.n_leads, cfg.n_samples]], "lead_mask": ["BOOL", [-1, cfg.n_leads]]},
            "outputs": {
                "abnormal_logit": ["FP32", [-1]],
                "superclass_logits": ["FP32", [-1, cfg.n_superclasses]],
                "statement_logits": ["FP32", [-1, cfg.n_statements]],
                "embedding": ["FP32", [-1, 2 * cfg.d_model]],
            },
        },
        "generator": {
            "inputs": {
                "signal": ["FP32", [-1, cfg.n_leads, cfg.n_samples]],
                "lead_mask": ["BOOL", [-1, cfg.n_leads]],
                **measured_io,
            },
            "outputs": {"token_ids": ["INT64", [-1, cfg.max_len]]},
        },
        "memory": {
            "inputs": {
                "signal": ["FP32", [-1, cfg.n_leads, cfg.n_samples]],
                "lead_mask": ["BOOL", [-1, cfg.n_leads]],
                **measured_io,
            },
            "outputs": {
                "memory": [
                    "FP32",
                    [
                        -1,
                        cfg.n_samples // 2 ** len(cfg.channels)
                        + int(cfg.condition_on_heads)
                        + int(cfg.condition_on_measured),
                        cfg.d_model,
                    ],
                ]
            },
        },
        "decoder": {
            "inputs": {"tokens": ["INT64", [-1, -1]], "memory": ["FP32", [-1, -1, cfg.d_model]]},
            "outputs": {"logits": ["FP32", [-1, -1, cfg.vocab_size]]},
        },
        "special_ids": {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID, "unk": UNK_ID},
        "superclasses": ["NORM", "MI", "STTC", "CD", "HYP"],
        "statement_codes": list(cfg.statement_codes),
        "measured_findings": _measured_codes(cfg.condition_on_measured),
        "threshold_prob_abnormal": ckpt["operating_point"]["threshold_prob_abnormal"],
        "preprocessing": "inference.preprocessing.foundation_inputs (100 Hz, 10 s, 0.5-40 Hz, robust per-lead scale)",
    }
    (out_dir / "foundation_io.json").write_text(json.dumps(io, indent=1))
    result["files"] = sorted(p.name for p in out_dir.iterdir())
    return result


def _measured_codes(enabled: bool) -> list[str]:
    """SNOMED CT codes of the ``measured`` input, in order ([] when the model takes none)."""
    if not enabled:
        return []
    from inference.clinical.conditioning import MEASURED_SNOMED

    return list(MEASURED_SNOMED)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "ecg_models" / "weights" / "foundation.pt")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--device", default="cpu", help="where the written TorchScript files are checked (cpu, cuda)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(export(args.checkpoint, args.out, onnx=not args.no_onnx, device=args.device)))


if __name__ == "__main__":
    main()
