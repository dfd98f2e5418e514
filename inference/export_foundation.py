"""Export the foundation model into the Triton repository (called by ``python -m inference.export``).

One model, ``ecg_foundation``, ``pytorch_libtorch`` (TorchScript, scripted) with a GPU config and a
CPU profile: one request and **one encoder pass per ECG** give both the classifier's outputs and
the report (issue 14). ``signal (12, 1000) f32`` and ``lead_mask (12,) bool`` give
``abnormal_logit__0 (1,)``, ``superclass_logits__1 (5,)``, ``statement_logits__2 (S,)``,
``embedding__3 (D,)``, ``novelty__4 (1,)`` (the cosine distance / 2 of the embedding to its
nearest reference embedding, the labelled training ECGs, a buffer inside the served module, so the
active-learning novelty term needs no data on the client) and ``token_ids__5 (max_len,) int64``
(the greedy report). The encoder's latents feed both the heads and the decoder's memory
(``FoundationMemory.heads_and_memory``); the whole greedy loop runs inside the call with a
key/value cache (``FoundationCachedDecoder``: each step feeds only the newest token), never one
round trip per token. When the checkpoint is conditioned on measured findings
(``condition_on_measured``) it takes a third input ``measured (K,) f32``
(``inference.clinical.conditioning.measured_vector``), and its serving facts list the K SNOMED CT
codes in input order (``measured_findings``).

Why one scripted model and not a Triton ensemble or BLS over two: an ensemble would still run two
models, and passing the latents between them costs a device-to-host copy of (B, T, D) per ECG in
the Python BLS; one module shares them in device memory. The price: the classifier's outputs wait
for the report's decoding (tens of ms on CPU), which the analysis job waits for anyway.

Why TorchScript and not ONNX: the report's greedy decoding is a data-dependent loop (stop at
EOS, up to ``max_len`` steps) that runs inside one Triton call; ONNX would need it unrolled or
split into one request per token. The module is device-free (scripted: devices are read from the
inputs at run time); tests/inference/test_served_artifacts.py checks it.

Each version's ``serving.json`` (copied into the config as ``serving_v<N>``) carries what the
client needs to interpret the outputs: the version label, the probability threshold chosen on
validation, the class and statement names, and the tokenizer's vocabulary and special ids, so
report text is decoded without the ``tokenizers`` library in the service image.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.clinical.conditioning import MEASURED_SNOMED
from inference.model_repository import (
    FOUNDATION_MODEL,
    RETIRED_REPORT_MODEL,
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
    """The served module (eager), its serving facts and model config, built from one checkpoint."""

    module: Any  # torch.nn.Module: (signal, lead_mask[, measured]) -> the six outputs of FOUNDATION_OUTPUTS_ALL
    parameters: dict[str, str]
    cfg: Any  # FoundationConfig


def served_foundation(checkpoint: Path) -> ServedFoundationParts:
    """Return the module Triton serves (and the in-process backend runs) and its serving facts."""
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
        """Classifier outputs, the embedding's novelty and the report ids from one encoder pass."""

        def __init__(self, model: torch.nn.Module, reference: torch.Tensor) -> None:
            super().__init__()
            self.generator = FoundationGreedyGenerator(model, kv_cache=True)
            self.register_buffer("reference", torch.nn.functional.normalize(reference.float(), dim=1))

        def outputs(
            self, signal: torch.Tensor, lead_mask: torch.Tensor, measured: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            abnormal, superclass, statement, embedding, memory = self.generator.memory.heads_and_memory(
                signal, lead_mask, measured
            )
            similarity = torch.nn.functional.normalize(embedding, dim=1) @ self.reference.T
            novelty = ((1.0 - similarity.max(dim=1).values) / 2.0).clamp(0.0, 1.0)
            # Scalars as (batch, 1): Triton configs cannot declare a batched scalar.
            ids = self.generator.ids(memory)
            return abnormal.unsqueeze(-1), superclass, statement, embedding, novelty.unsqueeze(-1), ids

        def forward(
            self, signal: torch.Tensor, lead_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            return self.outputs(signal, lead_mask, None)

    # The served module's forward names exactly the config's inputs (Triton matches them), so a
    # conditioned checkpoint gets its own class with the third input.
    class ServedConditionedFoundation(ServedFoundation):
        def forward(  # type: ignore[override]
            self, signal: torch.Tensor, lead_mask: torch.Tensor, measured: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            return self.outputs(signal, lead_mask, measured)

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = from_checkpoint(checkpoint).eval()
    cfg = model.cfg
    parameters = {
        "model_version_label": f"{checkpoint.stem}-{sha256_prefix(checkpoint)}",
        "threshold_prob_abnormal": repr(float(ckpt["operating_point"]["threshold_prob_abnormal"])),
        "superclasses": json.dumps(["NORM", "MI", "STTC", "CD", "HYP"]),
        "statement_codes": json.dumps(list(cfg.statement_codes)),
        "vocabulary": json.dumps(tokenizer_vocabulary(checkpoint.parent / ckpt["tokenizer"])),
        "special_ids": json.dumps({"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID, "unk": UNK_ID}),
    }
    if cfg.condition_on_measured:
        if len(MEASURED_SNOMED) != cfg.n_measured:
            raise ValueError(
                f"{checkpoint}: n_measured {cfg.n_measured} != len(MEASURED_FINDINGS) {len(MEASURED_SNOMED)}"
            )
        parameters["measured_findings"] = json.dumps(list(MEASURED_SNOMED))
    served = ServedConditionedFoundation if cfg.condition_on_measured else ServedFoundation
    return ServedFoundationParts(
        module=served(model, torch.as_tensor(ckpt["reference_embeddings"])).eval(), parameters=parameters, cfg=cfg
    )


def foundation_spec(cfg: Any) -> ModelSpec:
    """Return the configs' shapes of ``ecg_foundation`` for the model config ``cfg``."""
    measured = (Tensor("measured", "TYPE_FP32", (cfg.n_measured,)),) if cfg.condition_on_measured else ()
    return ModelSpec(
        name=FOUNDATION_MODEL,
        platform="pytorch_libtorch",
        inputs=(
            Tensor("signal", "TYPE_FP32", (cfg.n_leads, cfg.n_samples)),
            Tensor("lead_mask", "TYPE_BOOL", (cfg.n_leads,)),
            *measured,
        ),
        outputs=(
            Tensor("abnormal_logit__0", "TYPE_FP32", (1,)),
            Tensor("superclass_logits__1", "TYPE_FP32", (cfg.n_superclasses,)),
            Tensor("statement_logits__2", "TYPE_FP32", (cfg.n_statements,)),
            Tensor("embedding__3", "TYPE_FP32", (2 * cfg.d_model,)),
            Tensor("novelty__4", "TYPE_FP32", (1,)),
            Tensor("token_ids__5", "TYPE_INT64", (cfg.max_len,)),
        ),
    )


def export_foundation(
    repository: Path, checkpoint: Path, *, device: str = "cpu", version: int = 1, keep_other_versions: bool = False
) -> list[dict[str, Any]]:
    """Write ``ecg_foundation`` into ``repository``; return its export check.

    The artifact is scripted on CPU and saved with CPU weights; ``device`` is where the written
    file is loaded and compared with the eager module (probabilities within 1e-5, same token ids).
    A fresh export (not ``keep_other_versions``) removes the retired ``ecg_report`` model.
    """
    import torch  # noqa: PLC0415 ml extra (torch), export only

    parts = served_foundation(checkpoint)
    cfg = parts.cfg
    with torch.no_grad():
        scripted = torch.jit.script(parts.module)
    spec = foundation_spec(cfg)
    model_dir = write_model(
        repository,
        spec,
        lambda path: scripted.save(str(path)),
        parts.parameters,
        version=version,
        keep_other_versions=keep_other_versions,
    )
    if not keep_other_versions and (repository / RETIRED_REPORT_MODEL).is_dir():
        shutil.rmtree(repository / RETIRED_REPORT_MODEL)
    check = (torch.randn(3, cfg.n_leads, cfg.n_samples) * 0.2, torch.ones(3, cfg.n_leads, dtype=torch.bool))
    check[1][1, 6:] = False
    check += (torch.eye(3, cfg.n_measured),) if cfg.condition_on_measured else ()
    on_device = tuple(t.to(device) for t in check)
    with torch.no_grad():
        eager = parts.module(*check)
        loaded = torch.jit.load(str(model_dir / spec.filename), map_location=device)(*on_device)
    loaded = tuple(t.cpu() for t in loaded)
    diff = max(float((a - b).abs().max()) for a, b in zip(eager[:5], loaded[:5], strict=True))
    return [
        {
            "model": FOUNDATION_MODEL,
            "version": version,
            "version_label": parts.parameters["model_version_label"],
            "device": device,
            "max_abs_diff": diff,
            "token_ids_equal": bool(torch.equal(eager[5], loaded[5])),
        }
    ]
