"""Active learning for re-annotation: which unreviewed ECGs would a clinician's label help most?

Pure numpy (no I/O, no torch), so the service can call it per ECG. Three terms, each in [0, 1]:

- uncertainty of the classifier: ``1 - |2p - 1|`` (1 at p = 0.5, 0 at p in {0, 1});
- disagreement with the detector: ``|p - sigmoid(z)|`` where ``z`` is the detector's score
  standardised on validation normals (``(score - rest_mean) / rest_std``, so z = 0 is a typical
  normal); omitted (weight renormalised away) when no detector score is available;
- novelty of the embedding: cosine distance to the nearest reference embedding (the labelled
  training ECGs, shipped in the checkpoint as ``reference_embeddings``), divided by 2.

``review_priority`` is the weighted mean of the available terms; ``rank_for_review`` sorts a
batch by it (highest first, ties by index).

Label audit (ECGs that already carry a label, which may be wrong): ``label_disagreement`` is
``|y - p|`` for the given label y in {0, 1}, a monotone transform of the cross-entropy loss of the
model's prediction against that label (1 = the model is sure of the other class). ``audit_priority``
mixes it with uncertainty; ``rank_for_audit`` sorts by it. The probabilities must come from a model
that did not train on the ECG being scored (out-of-fold), or a memorised wrong label looks right.
"""

from __future__ import annotations

import numpy as np

DEFAULT_WEIGHTS = {"uncertainty": 1.0, "disagreement": 1.0, "novelty": 1.0}


def _novelty(embedding: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """Cosine distance / 2 to the nearest reference row: (N, D), (M, D) -> (N,) in [0, 1]."""
    if reference is None or len(reference) == 0:
        return np.zeros(len(embedding))
    a = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-8)
    r = np.asarray(reference, dtype=np.float64)
    r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-8)
    return np.clip((1.0 - (a @ r.T).max(axis=1)) / 2.0, 0.0, 1.0)


def priority_terms(
    prob_abnormal: np.ndarray,
    detector_score_z: np.ndarray | None,
    embedding: np.ndarray,
    reference_embeddings: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Return each term (N,) for a batch; ``disagreement`` is absent without detector scores."""
    p = np.clip(np.asarray(prob_abnormal, dtype=np.float64).reshape(-1), 0.0, 1.0)
    emb = np.asarray(embedding, dtype=np.float64).reshape(len(p), -1)
    terms = {"uncertainty": 1.0 - np.abs(2.0 * p - 1.0), "novelty": _novelty(emb, reference_embeddings)}
    if detector_score_z is not None:
        z = np.asarray(detector_score_z, dtype=np.float64).reshape(-1)
        terms["disagreement"] = np.abs(p - 1.0 / (1.0 + np.exp(-z)))
    return terms


def batch_priority(
    prob_abnormal: np.ndarray,
    detector_score_z: np.ndarray | None,
    embedding: np.ndarray,
    reference_embeddings: np.ndarray | None,
    weights: dict[str, float] | None = None,
) -> np.ndarray:
    """Review priority (N,) in [0, 1]: weighted mean of the available terms."""
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    terms = priority_terms(prob_abnormal, detector_score_z, embedding, reference_embeddings)
    total = sum(w[k] for k in terms)
    if total <= 0:
        return np.zeros(len(terms["uncertainty"]))
    return sum(w[k] * v for k, v in terms.items()) / total


def review_priority(
    prob_abnormal: float,
    detector_score_z: float | None,
    embedding: np.ndarray,
    reference_embeddings: np.ndarray | None,
    weights: dict[str, float] | None = None,
) -> float:
    """Priority of one ECG (higher = review first), in [0, 1]."""
    z = None if detector_score_z is None else np.array([detector_score_z])
    emb = np.asarray(embedding, dtype=np.float64).reshape(1, -1)
    return float(batch_priority(np.array([prob_abnormal]), z, emb, reference_embeddings, weights)[0])


def rank_for_review(
    prob_abnormal: np.ndarray,
    detector_score_z: np.ndarray | None,
    embedding: np.ndarray,
    reference_embeddings: np.ndarray | None,
    weights: dict[str, float] | None = None,
) -> np.ndarray:
    """Indices of the batch, most useful to label first (stable for ties)."""
    score = batch_priority(prob_abnormal, detector_score_z, embedding, reference_embeddings, weights)
    return np.argsort(-score, kind="stable")


def label_disagreement(prob_abnormal: np.ndarray, given_label: np.ndarray) -> np.ndarray:
    """``|y - p|`` (N,) in [0, 1]: how strongly the model's prediction contradicts the given label.

    Equals ``1 - exp(-loss)`` for the cross-entropy loss of p against y, so it ranks like the loss
    but stays bounded (a mean with the other terms is not dominated by one p of 1e-9).
    """
    p = np.clip(np.asarray(prob_abnormal, dtype=np.float64).reshape(-1), 0.0, 1.0)
    y = np.asarray(given_label, dtype=np.float64).reshape(-1)
    if len(y) != len(p) or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("given_label must hold one 0/1 label per probability")
    return np.abs(y - p)


def audit_priority(prob_abnormal: np.ndarray, given_label: np.ndarray, uncertainty_weight: float = 0.0) -> np.ndarray:
    """Label-audit priority (N,) in [0, 1]: weighted mean of disagreement (weight 1) and uncertainty.

    ``uncertainty_weight = 0`` (the default) is disagreement alone, which found flipped labels
    fastest in ``training.foundation_label_noise`` (docs/models/foundation.md): uncertainty ranks a
    confident contradiction (the typical flipped label) below any borderline ECG.
    """
    d = label_disagreement(prob_abnormal, given_label)
    u = 1.0 - np.abs(2.0 * np.clip(np.asarray(prob_abnormal, dtype=np.float64).reshape(-1), 0.0, 1.0) - 1.0)
    return (d + uncertainty_weight * u) / (1.0 + uncertainty_weight)


def rank_for_audit(prob_abnormal: np.ndarray, given_label: np.ndarray, uncertainty_weight: float = 0.0) -> np.ndarray:
    """Indices of labelled ECGs, the most likely wrong label first (stable for ties)."""
    return np.argsort(-audit_priority(prob_abnormal, given_label, uncertainty_weight), kind="stable")
