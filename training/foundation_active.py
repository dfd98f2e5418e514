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
