"""Export the foundation model into the Triton repository (called by ``python -m inference.export``).

Two models, both ``pytorch_libtorch`` with a GPU config and a CPU variant:

- ``ecg_foundation``: the classifier, traced; ``signal (12, 1000) f32`` and ``lead_mask (12,) bool``
  give ``abnormal_logit__0 (1,)``, ``superclass_logits__1 (5,)``, ``statement_logits__2 (S,)``,
  ``embedding__3 (D,)`` and ``novelty__4 (1,)``: the cosine distance / 2 of the embedding to its
  nearest reference embedding (the labelled training ECGs, a buffer inside the served module), so
  the active-learning novelty term needs no data on the client.
- ``ecg_report``: the greedy report generator, scripted: the whole decoding loop runs inside one
  Triton call (``token_ids__0 (max_len,) int64``), never one round trip per token. When the
  checkpoint is conditioned on measured findings (``condition_on_measured``) it takes a third
  input ``measured (K,) f32`` (``inference.clinical.conditioning.measured_vector``), and its config
  parameter ``measured_findings`` lists the K SNOMED CT codes in input order.

Config ``parameters`` carry what the client needs to interpret the outputs: the version label,
the probability threshold chosen on validation, the class and statement names, and (for
``ecg_report``) the tokenizer's vocabulary and special ids, so report text is decoded without the
``tokenizers`` library in the service image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.clinical.conditioning import MEASURED_SNOMED
from inference.model_repository import FOUNDATION_MODEL, REPORT_MODEL, Tensor, sha256_prefix, write_model


def tokenizer_vocabulary(tokenizer_path: Path) -> list[str]:
    """Return the tokenizer's pieces indexed by id (from its ``tokenizers`` JSON file)."""
    vocab: dict[str, int] = json.loads(tokenizer_path.read_text())["model"]["vocab"]
    pieces = [""] * (max(vocab.values()) + 1)
    for piece, index in vocab.items():
        pieces[index] = piece
    return pieces


@dataclass
class ServedFoundationParts:
    """The two served modules (eager) and their config parameters, built from one checkpoint."""

    classifier: Any  # torch.nn.Module: (signal, lead_mask) -> the five classifier outputs
    generator: Any  # torch.nn.Module: (signal, lead_mask[, measured]) -> token ids
    classifier_parameters: dict[str, str]
    report_parameters: dict[str, str]
    cfg: Any  # FoundationConfig


def served_foundation(checkpoint: Path) -> ServedFoundationParts:
    """Return the modules Triton serves (and the in-process backend runs) and their parameters."""
    import torch  # noqa: PLC0415 ml extra (torch), export only

    from ecg_models.foundation import (  # noqa: PLC0415 ml extra (torch), export only
        BOS_ID,
        EOS_ID,
        PAD_ID,
        UNK_ID,
        FoundationGreedyGenerator,
        from_checkpoint,
    )

    class ServedFoundation(torch.nn.Module):
        """Classifier outputs plus the embedding's novelty; scalars as (batch, 1) for Triton."""

        def __init__(self, model: torch.nn.Module, reference: torch.Tensor) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("reference", torch.nn.functional.normalize(reference.float(), dim=1))

        def forward(
            self, signal: torch.Tensor, lead_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            abnormal, superclass, statement, embedding = self.model(signal, lead_mask)
            similarity = torch.nn.functional.normalize(embedding, dim=1) @ self.reference.T
            novelty = ((1.0 - similarity.max(dim=1).values) / 2.0).clamp(0.0, 1.0)
            return abnormal.unsqueeze(-1), superclass, statement, embedding, novelty.unsqueeze(-1)

    # The served report module's forward names exactly the config's inputs (Triton matches them).
    class ServedReport(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.generator = FoundationGreedyGenerator(model)

        def forward(self, signal: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
            return self.generator(signal, lead_mask, None)

    class ServedConditionedReport(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.generator = FoundationGreedyGenerator(model)

        def forward(self, signal: torch.Tensor, lead_mask: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
            return self.generator(signal, lead_mask, measured)

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = from_checkpoint(checkpoint).eval()
    cfg = model.cfg
    label = f"{checkpoint.stem}-{sha256_prefix(checkpoint)}"
    report_parameters = {
        "model_version_label": label,
        "vocabulary": json.dumps(tokenizer_vocabulary(checkpoint.parent / ckpt["tokenizer"])),
        "special_ids": json.dumps({"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID, "unk": UNK_ID}),
    }
    if cfg.condition_on_measured:
        if len(MEASURED_SNOMED) != cfg.n_measured:
            raise ValueError(
                f"{checkpoint}: n_measured {cfg.n_measured} != len(MEASURED_FINDINGS) {len(MEASURED_SNOMED)}"
            )
        report_parameters["measured_findings"] = json.dumps(list(MEASURED_SNOMED))
    return ServedFoundationParts(
        classifier=ServedFoundation(model, torch.as_tensor(ckpt["reference_embeddings"])).eval(),
        generator=(ServedConditionedReport(model) if cfg.condition_on_measured else ServedReport(model)).eval(),
        classifier_parameters={
            "model_version_label": label,
            "threshold_prob_abnormal": repr(float(ckpt["operating_point"]["threshold_prob_abnormal"])),
            "superclasses": json.dumps(["NORM", "MI", "STTC", "CD", "HYP"]),
            "statement_codes": json.dumps(list(cfg.statement_codes)),
        },
        report_parameters=report_parameters,
        cfg=cfg,
    )


def export_foundation(repository: Path, checkpoint: Path) -> list[dict[str, Any]]:
    """Write ``ecg_foundation`` and ``ecg_report`` into ``repository``; return their export checks."""
    import torch  # noqa: PLC0415 ml extra (torch), export only

    parts = served_foundation(checkpoint)
    cfg = parts.cfg
    example = (torch.randn(2, cfg.n_leads, cfg.n_samples) * 0.2, torch.ones(2, cfg.n_leads, dtype=torch.bool))
    with torch.no_grad():
        traced = torch.jit.trace(parts.classifier, example)
        scripted = torch.jit.script(parts.generator)
    inputs = [
        Tensor("signal", "TYPE_FP32", (cfg.n_leads, cfg.n_samples)),
        Tensor("lead_mask", "TYPE_BOOL", (cfg.n_leads,)),
    ]
    outputs = [
        Tensor("abnormal_logit__0", "TYPE_FP32", (1,)),
        Tensor("superclass_logits__1", "TYPE_FP32", (cfg.n_superclasses,)),
        Tensor("statement_logits__2", "TYPE_FP32", (cfg.n_statements,)),
        Tensor("embedding__3", "TYPE_FP32", (2 * cfg.d_model,)),
        Tensor("novelty__4", "TYPE_FP32", (1,)),
    ]
    classifier_dir = write_model(
        repository, FOUNDATION_MODEL, traced, inputs=inputs, outputs=outputs, parameters=parts.classifier_parameters
    )
    measured_inputs = [Tensor("measured", "TYPE_FP32", (cfg.n_measured,))] if cfg.condition_on_measured else []
    report_dir = write_model(
        repository,
        REPORT_MODEL,
        scripted,
        inputs=inputs + measured_inputs,
        outputs=[Tensor("token_ids__0", "TYPE_INT64", (cfg.max_len,))],
        parameters=parts.report_parameters,
    )
    check = (torch.randn(3, cfg.n_leads, cfg.n_samples) * 0.2, torch.ones(3, cfg.n_leads, dtype=torch.bool))
    check[1][1, 6:] = False
    report_check = check + ((torch.eye(3, cfg.n_measured),) if cfg.condition_on_measured else ())
    with torch.no_grad():
        eager = parts.classifier(*check)
        loaded = torch.jit.load(str(classifier_dir / "1" / "model.pt"))(*check)
        diff = max(float((a - b).abs().max()) for a, b in zip(eager, loaded, strict=True))
        ids_equal = torch.equal(
            parts.generator(*report_check), torch.jit.load(str(report_dir / "1" / "model.pt"))(*report_check)
        )
    label = parts.classifier_parameters["model_version_label"]
    return [
        {"model": FOUNDATION_MODEL, "version_label": label, "max_abs_diff": diff},
        {"model": REPORT_MODEL, "version_label": label, "token_ids_equal": bool(ids_equal)},
    ]
