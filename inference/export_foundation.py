"""Export the foundation model into the Triton repository (called by ``python -m inference.export``).

Two models, both ``pytorch_libtorch`` (TorchScript) with a GPU config and a CPU profile:

- ``ecg_foundation``: the classifier, traced; ``signal (12, 1000) f32`` and ``lead_mask (12,) bool``
  give ``abnormal_logit__0 (1,)``, ``superclass_logits__1 (5,)``, ``statement_logits__2 (S,)``,
  ``embedding__3 (D,)`` and ``novelty__4 (1,)``: the cosine distance / 2 of the embedding to its
  nearest reference embedding (the labelled training ECGs, a buffer inside the served module), so
  the active-learning novelty term needs no data on the client.
- ``ecg_report``: the greedy report generator, scripted: the whole decoding loop runs inside one
  Triton call (``token_ids__0 (max_len,) int64``), never one round trip per token, with a
  key/value cache (``FoundationCachedDecoder``: each step feeds only the newest token). When the
  checkpoint is conditioned on measured findings (``condition_on_measured``) it takes a third
  input ``measured (K,) f32`` (``inference.clinical.conditioning.measured_vector``), and its config
  parameter ``measured_findings`` lists the K SNOMED CT codes in input order.

Why TorchScript and not ONNX here: the report's greedy decoding is a data-dependent loop (stop at
EOS, up to ``max_len`` steps) that runs inside one Triton call; ONNX would need it unrolled or
split into one request per token. The classifier stays on the same backend because it shares the
encoder with the report (the planned one-encoder-pass model holds both). Both are device-free:
the classifier is traced from code that never names a device, the generator is scripted (devices
are read from the inputs at run time); tests/inference/test_served_artifacts.py checks it.

Each version's ``serving.json`` (copied into the config as ``serving_v<N>``) carries what the
client needs to interpret the outputs: the version label, the probability threshold chosen on
validation, the class and statement names, and (for ``ecg_report``) the tokenizer's vocabulary
and special ids, so report text is decoded without the ``tokenizers`` library in the service image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.clinical.conditioning import MEASURED_SNOMED
from inference.model_repository import (
    FOUNDATION_MODEL,
    REPORT_MODEL,
    ModelSpec,
    Tensor,
    sha256_prefix,
    write_model,
)


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
            self.generator = FoundationGreedyGenerator(model, kv_cache=True)

        def forward(self, signal: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
            return self.generator(signal, lead_mask, None)

    class ServedConditionedReport(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.generator = FoundationGreedyGenerator(model, kv_cache=True)

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


def foundation_specs(cfg: Any) -> tuple[ModelSpec, ModelSpec]:
    """Return the configs' shapes of ``ecg_foundation`` and ``ecg_report`` for the model config ``cfg``."""
    inputs = (
        Tensor("signal", "TYPE_FP32", (cfg.n_leads, cfg.n_samples)),
        Tensor("lead_mask", "TYPE_BOOL", (cfg.n_leads,)),
    )
    classifier = ModelSpec(
        name=FOUNDATION_MODEL,
        platform="pytorch_libtorch",
        inputs=inputs,
        outputs=(
            Tensor("abnormal_logit__0", "TYPE_FP32", (1,)),
            Tensor("superclass_logits__1", "TYPE_FP32", (cfg.n_superclasses,)),
            Tensor("statement_logits__2", "TYPE_FP32", (cfg.n_statements,)),
            Tensor("embedding__3", "TYPE_FP32", (2 * cfg.d_model,)),
            Tensor("novelty__4", "TYPE_FP32", (1,)),
        ),
    )
    measured = (Tensor("measured", "TYPE_FP32", (cfg.n_measured,)),) if cfg.condition_on_measured else ()
    report = ModelSpec(
        name=REPORT_MODEL,
        platform="pytorch_libtorch",
        inputs=inputs + measured,
        outputs=(Tensor("token_ids__0", "TYPE_INT64", (cfg.max_len,)),),
    )
    return classifier, report


def export_foundation(
    repository: Path, checkpoint: Path, *, device: str = "cpu", version: int = 1, keep_other_versions: bool = False
) -> list[dict[str, Any]]:
    """Write ``ecg_foundation`` and ``ecg_report`` into ``repository``; return their export checks.

    The artifacts are traced/scripted on CPU and saved with CPU weights; ``device`` is where the
    written files are loaded and compared with the eager model.
    """
    import torch  # noqa: PLC0415 ml extra (torch), export only

    parts = served_foundation(checkpoint)
    cfg = parts.cfg
    example = (torch.randn(2, cfg.n_leads, cfg.n_samples) * 0.2, torch.ones(2, cfg.n_leads, dtype=torch.bool))
    with torch.no_grad():
        traced = torch.jit.trace(parts.classifier, example)
        scripted = torch.jit.script(parts.generator)
    classifier_spec, report_spec = foundation_specs(cfg)
    classifier_dir = write_model(
        repository,
        classifier_spec,
        lambda path: traced.save(str(path)),
        parts.classifier_parameters,
        version=version,
        keep_other_versions=keep_other_versions,
    )
    report_dir = write_model(
        repository,
        report_spec,
        lambda path: scripted.save(str(path)),
        parts.report_parameters,
        version=version,
        keep_other_versions=keep_other_versions,
    )
    check = (torch.randn(3, cfg.n_leads, cfg.n_samples) * 0.2, torch.ones(3, cfg.n_leads, dtype=torch.bool))
    check[1][1, 6:] = False
    report_check = check + ((torch.eye(3, cfg.n_measured),) if cfg.condition_on_measured else ())
    on_device = tuple(t.to(device) for t in report_check)
    with torch.no_grad():
        eager = parts.classifier(*check)
        loaded = torch.jit.load(str(classifier_dir / classifier_spec.filename), map_location=device)(*on_device[:2])
        diff = max(float((a - b.cpu()).abs().max()) for a, b in zip(eager, loaded, strict=True))
        generator = torch.jit.load(str(report_dir / report_spec.filename), map_location=device)
        ids_equal = torch.equal(parts.generator(*report_check), generator(*on_device).cpu())
    label = parts.classifier_parameters["model_version_label"]
    return [
        {"model": FOUNDATION_MODEL, "version": version, "version_label": label, "device": device, "max_abs_diff": diff},
        {
            "model": REPORT_MODEL,
            "version": version,
            "version_label": label,
            "device": device,
            "token_ids_equal": bool(ids_equal),
        },
    ]
