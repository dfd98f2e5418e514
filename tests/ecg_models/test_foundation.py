"""Tiny-config tests of the foundation model (docs/style.md G12): shapes, signature, export, decoding."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch

from ecg_models.foundation import (
    EOS_ID,
    PAD_ID,
    FoundationConfig,
    FoundationGreedyGenerator,
    FoundationMemory,
    FoundationModel,
    alignment_loss,
    beam_decode,
    beam_search,
    build_foundation,
    config_dict,
    from_checkpoint,
    greedy_decode,
    random_lead_masks,
    strip_ids,
)

SUBSETS = {"I": [0], "I+II": [0, 1], "limb6": list(range(6)), "V1-V6": list(range(6, 12)), "all12": list(range(12))}


def tiny_config() -> FoundationConfig:
    return FoundationConfig(
        channels=(16, 16, 32),
        d_model=32,
        n_res_blocks=1,
        cpc_offsets=(1, 3),
        statement_codes=("NORM", "SR", "IMI"),
        vocab_size=20,
        dec_layers=1,
        dec_heads=2,
        dec_ff=32,
        max_len=8,
        dropout=0.0,
    )


def tiny_model(seed: int = 0) -> FoundationModel:
    torch.manual_seed(seed)
    return build_foundation(tiny_config()).eval()


def batch(b: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 12, 1000, generator=g) * 0.2, torch.ones(b, 12, dtype=torch.bool)


def test_it_returns_every_head_with_its_shape() -> None:
    model = tiny_model()
    abnormal, superclass, statement, embedding = model(*batch())
    assert abnormal.shape == (3,)
    assert superclass.shape == (3, 5)
    assert statement.shape == (3, 3)
    assert embedding.shape == (3, 64)
    assert model.encode(*batch()).shape == (3, 125, 32)
    tokens = torch.ones(3, 5, dtype=torch.long)
    assert model.report_logits(tokens, *batch()).shape == (3, 5, 20)


def test_it_pins_the_forward_signature() -> None:
    assert list(inspect.signature(FoundationModel.forward).parameters) == ["self", "signal", "lead_mask"]
    # ``measured`` (B, K): the measured-findings vector, required only when condition_on_measured.
    assert list(inspect.signature(FoundationGreedyGenerator.forward).parameters) == [
        "self",
        "signal",
        "lead_mask",
        "measured",
    ]
    assert list(inspect.signature(FoundationMemory.forward).parameters) == ["self", "signal", "lead_mask", "measured"]


def test_it_round_trips_state_dict_and_checkpoint(tmp_path) -> None:
    model = tiny_model()
    path = tmp_path / "f.pt"
    torch.save({"model": model.state_dict(), "model_config": config_dict(model.cfg)}, path)
    loaded = from_checkpoint(path)
    assert loaded.cfg == model.cfg
    x = batch()
    for a, b in zip(model(*x), loaded(*x), strict=True):
        torch.testing.assert_close(a, b)


def test_it_is_deterministic_under_a_fixed_seed() -> None:
    x = batch()
    for a, b in zip(tiny_model(1)(*x), tiny_model(1)(*x), strict=True):
        assert torch.equal(a, b)


def test_it_decreases_the_cpc_loss_on_a_toy_batch() -> None:
    torch.manual_seed(0)
    model = build_foundation(tiny_config())
    x, mask = batch(8)
    t = torch.arange(1000).float()
    x = x * 0.1 + torch.sin(t / (5 + torch.arange(8).view(8, 1, 1)))  # 8 distinct periodic "ECGs"
    opt = torch.optim.Adam(list(model.encoder.parameters()) + list(model.cpc.parameters()), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model.cpc(model.encode(x, mask))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8


@pytest.mark.parametrize("name", list(SUBSETS))
def test_it_accepts_each_lead_subset(name: str) -> None:
    model = tiny_model()
    x, _ = batch(2)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, SUBSETS[name]] = True
    out = model(x, mask)
    assert all(torch.isfinite(o).all() for o in out)
    # Masked leads are ignored: changing them does not change the output.
    x2 = x.clone()
    x2[:, [i for i in range(12) if i not in SUBSETS[name]]] = 5.0
    torch.testing.assert_close(model(x2, mask)[0], out[0])


def test_it_terminates_greedy_and_beam_decoding() -> None:
    model = tiny_model()
    x = batch(2)
    ids = greedy_decode(model, *x)
    assert ids.shape == (2, 8) and ids.dtype == torch.int64
    beams = beam_decode(model, *x, beam=2)
    assert len(beams) == 2 and all(len(b) <= 8 for b in beams)
    # Once EOS is emitted the rest of the row is PAD.
    for row in ids.tolist():
        if EOS_ID in row:
            assert all(t == PAD_ID for t in row[row.index(EOS_ID) + 1 :])
    assert strip_ids([5, 6, EOS_ID, PAD_ID]) == [5, 6]


def test_it_exports_classifier_and_generator_matching_eager() -> None:
    model = tiny_model()
    x = batch(2)
    traced = torch.jit.trace(model, x)
    x3 = batch(3, seed=1)
    for a, b in zip(model(*x3), traced(*x3), strict=True):
        torch.testing.assert_close(a, b)
    scripted = torch.jit.script(FoundationGreedyGenerator(model).eval())
    assert torch.equal(scripted(*x3), greedy_decode(model, *x3))
    memory = model.memory(model.encode(*x3))
    torch.testing.assert_close(FoundationMemory(model)(*x3), memory)
    assert memory.shape == (3, 126, 32)  # 125 latent steps + the findings token


def test_the_kv_cached_generator_gives_the_ids_of_the_full_recomputation() -> None:
    for seed in (0, 1, 2):
        model = tiny_model(seed)
        x = batch(4, seed=seed)
        full = FoundationGreedyGenerator(model).eval()
        cached = FoundationGreedyGenerator(model, kv_cache=True).eval()
        with torch.no_grad():
            expected = full(*x)
            assert torch.equal(cached(*x), expected)
            assert torch.equal(torch.jit.script(cached)(*x), expected)
            # Step by step, the cached logits are the full decoder's last-position logits.
            memory = full.memory(*x)
            tokens = torch.cat([torch.full((4, 1), 1), expected[:, :3]], dim=1)
            cache: list[torch.Tensor] = []
            memory_kv = cached.cached.memory_keys_values(memory)
            for position in range(tokens.shape[1]):
                logits, cache = cached.cached.step(tokens[:, position], position, cache, memory_kv)
                torch.testing.assert_close(logits, model.decoder(tokens[:, : position + 1], memory)[:, -1])


def test_it_runs_beam_search_on_the_exported_parts() -> None:
    model = tiny_model()
    x = batch(2, seed=3)
    memory_net = torch.jit.script(FoundationMemory(model).eval())
    decoder = torch.jit.script(model.decoder.eval())
    exported = beam_search(decoder, memory_net(*x), model.cfg.max_len, beam=2)
    assert exported == beam_decode(model, *x, beam=2)


def test_it_exports_the_classifier_to_onnx(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = tiny_model()
    x = batch(2)
    path = tmp_path / "c.onnx"
    torch.onnx.export(
        model,
        x,
        str(path),
        input_names=["signal", "lead_mask"],
        dynamic_axes={"signal": {0: "b"}, "lead_mask": {0: "b"}},
        dynamo=False,
    )
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"signal": x[0].numpy(), "lead_mask": x[1].numpy()}
    )
    torch.testing.assert_close(torch.from_numpy(got[1]), model(*x)[1], atol=1e-5, rtol=1e-4)


def test_it_aligns_features_and_draws_non_empty_lead_subsets() -> None:
    a = torch.randn(6, 4)
    assert alignment_loss(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert alignment_loss(a + 1, a).item() > 1.0
    masks = random_lead_masks(50, 12, 1.0, torch.Generator().manual_seed(0))
    assert masks.any(1).all() and (~masks).any()


WEIGHTS = Path(__file__).resolve().parents[2] / "ecg_models" / "weights"
SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "ptbxl"


@pytest.mark.skipif(not (WEIGHTS / "foundation.pt").exists(), reason="shipped weights not built yet")
def test_it_runs_the_shipped_weights_on_a_sample_ecg_with_any_leads() -> None:
    from inference.clinical.conditioning import measured_vector_of_signal
    from inference.preprocessing import foundation_inputs
    from training.data.ptbxl import read_wfdb_12lead
    from training.foundation_text import ReportBuilder, load_tokenizer, report_text

    model = from_checkpoint(WEIGHTS / "foundation.pt")
    assert model.cfg.n_statements == 71
    tok = load_tokenizer(WEIGHTS / "foundation_tokenizer.json")
    builder = ReportBuilder.from_root(SAMPLES)
    signal, rate, _ = read_wfdb_12lead(SAMPLES / "records500" / "00000" / "00009_hr")
    generator = FoundationGreedyGenerator(model).eval()
    for leads in (list(range(12)), [0], [0, 1], list(range(6)), list(range(6, 12))):
        names = [("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")[i] for i in leads]
        inp = foundation_inputs(signal[leads], rate, names)
        assert inp.leads_used == tuple(names)
        x = torch.from_numpy(inp.signal)[None]
        m = torch.from_numpy(inp.lead_mask)[None]
        measured = None
        if model.cfg.condition_on_measured:  # the report follows the measured findings of the same leads
            measured = torch.from_numpy(measured_vector_of_signal(signal[leads], rate, names))[None]
        with torch.no_grad():
            prob = torch.sigmoid(model(x, m)[0])
            ids = generator(x, m, measured)
        assert 0.0 <= float(prob) <= 1.0
        text, reason = report_text(tok, builder, ids[0].tolist())
        assert text or reason  # never empty without a reason


def conditioned_model(seed: int = 0) -> FoundationModel:
    torch.manual_seed(seed)
    return build_foundation(dataclasses.replace(tiny_config(), condition_on_measured=True, n_measured=21)).eval()


def measured(b: int = 3) -> torch.Tensor:
    out = torch.zeros(b, 21)
    out[0, 0] = 1.0  # sinus rhythm
    out[-1, 4] = 1.0  # atrial fibrillation
    return out


def test_it_conditions_the_decoder_on_the_measured_findings_when_asked() -> None:
    model = conditioned_model()
    x = batch(3, seed=1)
    memory = model.memory(model.encode(*x), measured())
    assert memory.shape == (3, 127, 32)  # 125 latent steps + the findings token + the measured token
    torch.testing.assert_close(FoundationMemory(model)(*x, measured()), memory)
    other = measured()
    other[0] = 0.0
    assert not torch.allclose(model.memory(model.encode(*x), other)[0, -1], memory[0, -1])
    with pytest.raises(ValueError, match="measured"):
        model.memory(model.encode(*x))
    scripted = torch.jit.script(FoundationGreedyGenerator(model).eval())
    assert torch.equal(scripted(*x, measured()), greedy_decode(model, *x, measured()))
    memory_net = torch.jit.script(FoundationMemory(model).eval())
    decoder = torch.jit.script(model.decoder.eval())
    exported = beam_search(decoder, memory_net(*x, measured()), model.cfg.max_len, beam=2)
    assert exported == beam_decode(model, *x, beam=2, measured=measured())
    with pytest.raises(torch.jit.Error, match="measured"):
        scripted(*x)


def test_it_loads_checkpoints_with_and_without_the_measured_token(tmp_path) -> None:
    old = tiny_model()
    cfg = config_dict(old.cfg)
    del cfg["condition_on_measured"], cfg["n_measured"]  # written before the measured token
    torch.save({"model": old.state_dict(), "model_config": cfg}, tmp_path / "old.pt")
    loaded = from_checkpoint(tmp_path / "old.pt")
    assert not loaded.cfg.condition_on_measured
    assert not any(k.startswith("measured_embed") for k in loaded.state_dict())
    new = conditioned_model()
    torch.save({"model": new.state_dict(), "model_config": config_dict(new.cfg)}, tmp_path / "new.pt")
    again = from_checkpoint(tmp_path / "new.pt")
    x = batch(3)
    assert torch.equal(greedy_decode(again, *x, measured()), greedy_decode(new, *x, measured()))
    # An unconditioned model ignores ``measured``.
    assert torch.equal(greedy_decode(loaded, *x, measured()), greedy_decode(loaded, *x))
