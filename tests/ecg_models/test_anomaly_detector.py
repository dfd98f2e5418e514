"""Tiny-config tests of the anomaly detector (docs/style.md G12): shapes, save/load, signature, export."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from ecg_models.anomaly_detector import (
    AnomalyDetector,
    DetectorConfig,
    build_detector,
    complementary_masks,
    from_checkpoint,
    patchify,
    random_patch_mask,
    unpatchify,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "ecg_models" / "weights" / "detector.pt"


def tiny_config(**overrides: object) -> DetectorConfig:
    """Return a config small enough to run every test in well under a second."""
    base = dict(
        record_samples=240,
        beat_samples=48,
        max_beats=2,
        patch_size=12,
        d_model=16,
        n_heads=2,
        record_layers=1,
        beat_layers=1,
        decoder_layers=1,
        dropout=0.0,
    )
    base.update(overrides)
    return DetectorConfig(**base)  # type: ignore[arg-type]


def tiny_inputs(cfg: DetectorConfig, batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Return random forward arguments; the second ECG has no beats, the third misses leads."""
    g = torch.Generator().manual_seed(seed)
    record = torch.randn(batch, cfg.n_leads, cfg.record_samples, generator=g) * 0.2
    beats = torch.randn(batch, cfg.max_beats, cfg.n_leads, cfg.beat_samples, generator=g) * 0.2
    beat_valid = torch.ones(batch, cfg.max_beats, dtype=torch.bool)
    lead_valid = torch.ones(batch, cfg.n_leads, dtype=torch.bool)
    sample_valid = torch.ones(batch, cfg.record_samples, dtype=torch.bool)
    if batch > 1:
        beat_valid[1] = False
    if batch > 2:
        lead_valid[2, 6:] = False
        record[2, 6:] = 0.0
    r_track = torch.zeros(batch, cfg.record_samples)
    r_track[:, 30::70] = 1.0
    return record, beats, beat_valid, lead_valid, sample_valid, r_track


def seeded_model(cfg: DetectorConfig, seed: int = 0) -> AnomalyDetector:
    torch.manual_seed(seed)
    return build_detector(cfg).eval()


def test_it_returns_score_map_and_attributes_with_the_right_shapes() -> None:
    cfg = tiny_config()
    score, amap, attributes = seeded_model(cfg)(*tiny_inputs(cfg))
    assert score.shape == (3,)
    assert amap.shape == (3, cfg.n_leads, cfg.record_samples)
    assert attributes.shape == (3, cfg.n_attributes)
    assert torch.isfinite(score).all()


def test_it_scores_an_ecg_without_beats_on_the_record_view() -> None:
    cfg = tiny_config()
    model = seeded_model(cfg)
    record, beats, beat_valid, lead_valid, sample_valid, r_track = tiny_inputs(cfg)
    score, _, _ = model(record, beats, beat_valid, lead_valid, sample_valid, r_track)
    assert torch.isfinite(score[1])
    assert score[1] > 0


def test_it_zeroes_the_map_on_invalid_leads_and_padding() -> None:
    cfg = tiny_config()
    record, beats, beat_valid, lead_valid, sample_valid, r_track = tiny_inputs(cfg)
    sample_valid[0, -24:] = False
    _, amap, _ = seeded_model(cfg)(record, beats, beat_valid, lead_valid, sample_valid, r_track)
    assert torch.all(amap[2, 6:] == 0)
    assert torch.all(amap[0, :, -24:] == 0)


def test_it_returns_restoration_outputs_of_both_views() -> None:
    cfg = tiny_config()
    model = seeded_model(cfg)
    record, beats, beat_valid, _, _, r_track = tiny_inputs(cfg)
    t, tb = cfg.record_samples // cfg.patch_size, cfg.beat_samples // cfg.patch_size
    mask = random_patch_mask(3, t, cfg.mask_ratio)
    bmask = random_patch_mask(3, tb, cfg.mask_ratio)
    rec_mean, rec_logvar, beat_mean, beat_logvar, pooled = model.backbone(
        record, mask, beats, bmask, beat_valid, r_track
    )
    assert rec_mean.shape == rec_logvar.shape == (3, t, cfg.n_leads * cfg.patch_size)
    assert beat_mean.shape == beat_logvar.shape == (3, cfg.max_beats, tb, cfg.n_leads * cfg.patch_size)
    assert pooled.shape == (3, cfg.d_model)


@pytest.mark.parametrize("switch", ["use_trend", "use_beat_view", "use_attribute_head"])
def test_it_builds_and_trains_every_ablation(switch: str) -> None:
    cfg = tiny_config(**{switch: False})
    model = seeded_model(cfg).train()
    loss, parts = model.loss(*tiny_inputs(cfg), torch.zeros(3, 7), torch.ones(3, 7, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss)
    assert ("beat" in parts) == cfg.use_beat_view
    assert ("attributes" in parts) == cfg.use_attribute_head


def test_it_round_trips_the_state_dict_strictly(tmp_path: Path) -> None:
    cfg = tiny_config()
    model = seeded_model(cfg)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "model_config": cfg.__dict__}, path)
    loaded = from_checkpoint(path)
    missing, unexpected = loaded.load_state_dict(model.state_dict(), strict=True)
    assert not missing and not unexpected
    args = tiny_inputs(cfg)
    for a, b in zip(model(*args), loaded(*args), strict=True):
        assert torch.equal(a, b)


def test_it_pins_the_forward_signature() -> None:
    params = list(inspect.signature(AnomalyDetector.forward).parameters)
    assert params == ["self", "record", "beats", "beat_valid", "lead_valid", "sample_valid", "r_track"]


def test_it_is_deterministic_under_a_fixed_seed() -> None:
    cfg = tiny_config(dropout=0.1)
    args = tiny_inputs(cfg)
    a = seeded_model(cfg, seed=7)(*args)
    b = seeded_model(cfg, seed=7)(*args)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    model = seeded_model(cfg, seed=7).train()
    targets = (torch.zeros(3, 7), torch.ones(3, 7, dtype=torch.bool))
    torch.manual_seed(1)
    l1, _ = model.loss(*args, *targets, torch.Generator().manual_seed(3))
    torch.manual_seed(1)
    l2, _ = model.loss(*args, *targets, torch.Generator().manual_seed(3))
    assert torch.equal(l1, l2)


def test_it_exports_to_torchscript_with_matching_outputs() -> None:
    cfg = tiny_config()
    model = seeded_model(cfg)
    args = tiny_inputs(cfg)
    traced = torch.jit.trace(model, args)
    for eager, scripted in zip(model(*args), traced(*args), strict=True):
        torch.testing.assert_close(eager, scripted)


def test_it_exports_to_onnx_with_matching_outputs(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    cfg = tiny_config()
    model = seeded_model(cfg)
    args = tiny_inputs(cfg)
    path = tmp_path / "detector.onnx"
    names = ["record", "beats", "beat_valid", "lead_valid", "sample_valid", "r_track"]
    output_names = ["score", "anomaly_map", "attributes"]
    dynamic = {name: {0: "batch"} for name in names + output_names}
    torch.onnx.export(
        model, args, str(path), input_names=names, output_names=output_names, dynamic_axes=dynamic, dynamo=False
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other_batch = tiny_inputs(cfg, batch=5, seed=1)  # the graph must not bake in the traced batch size
    outputs = session.run(None, {n: a.numpy() for n, a in zip(names, other_batch, strict=True)})
    for eager, exported in zip(model(*other_batch), outputs, strict=True):
        np.testing.assert_allclose(eager.detach().numpy(), exported, rtol=1e-4, atol=1e-5)


def test_it_rejects_invalid_configs_with_the_values() -> None:
    with pytest.raises(ValueError, match="patch_size=7"):
        DetectorConfig(patch_size=7)
    with pytest.raises(ValueError, match="n_heads=3"):
        DetectorConfig(n_heads=3)
    with pytest.raises(ValueError, match="mask_ratio"):
        DetectorConfig(mask_ratio=1.5)


def test_it_masks_every_patch_exactly_once_when_scoring() -> None:
    masks = complementary_masks(100, 3, seed=1)
    assert masks.shape == (3, 100)
    assert torch.all(masks.sum(0) == 1)
    assert torch.equal(masks, complementary_masks(100, 3, seed=1))


def test_it_inverts_patchify() -> None:
    x = torch.randn(2, 12, 240)
    tokens = patchify(x, 24)
    assert tokens.shape == (2, 10, 12 * 24)
    assert torch.equal(unpatchify(tokens, 12, 24), x)


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.exists(), reason="shipped weights ecg_models/weights/detector.pt not present")
def test_it_reproduces_the_shipped_scores_on_the_sample_ecgs() -> None:
    from inference.preprocessing import detector_inputs, stack_detector_inputs
    from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record

    samples = REPO_ROOT / "samples" / "ptbxl"
    index = load_ptbxl_index(samples)
    records = [load_ptbxl_record(samples, row) for _, row in index.iterrows()]
    arrays = stack_detector_inputs([detector_inputs(r.signal, r.sample_rate_hz) for r in records])
    keys = ("record", "beats", "beat_valid", "lead_valid", "sample_valid", "r_track")
    model = from_checkpoint(SHIPPED)
    with torch.no_grad():
        score, amap, _ = model(*(torch.from_numpy(arrays[k]) for k in keys))
    # Golden scores of ecg_id 9, 38, 57, 63, 65, 116, 128, 131 (samples/README.md), shipped weights.
    expected = torch.tensor([5.8585, 6.3922, 4.0478, 5.9081, 6.0504, 4.2907, 12.2784, 3.5151])
    torch.testing.assert_close(score, expected, rtol=1e-3, atol=1e-3)
    assert amap.shape == (8, 12, 2400)


def test_it_places_beat_errors_at_their_r_peaks_in_the_map() -> None:
    cfg = tiny_config(beat_pre_samples=16)
    model = seeded_model(cfg)
    r_track = torch.zeros(1, cfg.record_samples)
    r_track[0, [5, 100, 170]] = 1.0  # the first peak is too early for a full window and is skipped
    beat_err = torch.zeros(1, cfg.max_beats, cfg.n_leads, cfg.beat_samples)
    beat_err[0, 0, 3] = 1.0  # beat 0 = the peak at 100
    placed = model._place_beats(beat_err, r_track, torch.ones(1, cfg.max_beats, dtype=torch.bool))
    nonzero = torch.nonzero(placed[0, 3]).flatten()
    assert nonzero.min().item() == 100 - 16
    assert nonzero.max().item() == 100 - 16 + cfg.beat_samples - 1
    assert placed[0, [0, 1, 2, 4]].abs().sum() == 0
