"""Report text for the foundation model: deterministic English text from SCP codes, the tokenizer,
the inverse parser (text -> codes) and the text metrics (BLEU-4, ROUGE-L, label check).

Target text: the record's statements ordered rhythm first, then diagnostic (in
``scp_statements.csv`` row order, NORM written as "normal ecg"), then form-only statements; each
is its lower-cased ``description``, and they are joined as sentences ("sinus rhythm. normal
ecg."). Likelihoods are ignored, like the label rule. Because descriptions are unique and contain
no ". ", :meth:`ReportBuilder.parse` inverts :meth:`ReportBuilder.build` exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ecg_models.foundation import BOS_ID, EOS_ID, PAD_ID, SUPERCLASSES, UNK_ID, strip_ids

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")  # ids 0..3, matching ecg_models.foundation
EMPTY_REASON = "the decoder produced no recognisable finding; review the ECG manually"


class ReportBuilder:
    """Build report text from SCP codes and parse it back, using ``scp_statements.csv``."""

    def __init__(self, statements: pd.DataFrame) -> None:
        self.codes: tuple[str, ...] = tuple(str(c) for c in statements.index)
        rank = {}
        for row_no, (code, row) in enumerate(statements.iterrows()):
            group = 0 if row.get("rhythm") == 1.0 else (1 if row.get("diagnostic") == 1.0 else 2)
            rank[str(code)] = (group, row_no)
        self.rank = rank
        self.phrase = {
            str(c): ("normal ecg" if c == "NORM" else str(d).strip().lower())
            for c, d in statements["description"].items()
        }
        self.code_of = {p: c for c, p in self.phrase.items()}
        self.superclass = {
            str(c): str(k)
            for c, k in statements["diagnostic_class"].items()
            if isinstance(k, str) and statements.loc[c, "diagnostic"] == 1.0
        }

    @classmethod
    def from_root(cls, root: Path) -> ReportBuilder:
        return cls(pd.read_csv(Path(root) / "scp_statements.csv", index_col=0))

    def build(self, codes: Iterable[str]) -> str:
        """Return the report for ``codes`` ("" when none is a known statement)."""
        known = sorted({c for c in codes if c in self.phrase}, key=lambda c: self.rank[c])
        return "".join(f"{self.phrase[c]}. " for c in known).strip()

    def parse(self, text: str) -> set[str]:
        """Return the SCP codes named in ``text`` (unknown sentences are ignored)."""
        parts = [p.strip().rstrip(".").strip() for p in text.replace("\n", " ").split(". ")]
        return {self.code_of[p] for p in parts if p in self.code_of}

    def superclasses(self, codes: Iterable[str]) -> set[str]:
        return {self.superclass[c] for c in codes if c in self.superclass}


# --- tokenizer --------------------------------------------------------------------------------


def train_tokenizer(texts: Sequence[str], vocab_size: int = 256) -> Tokenizer:
    """Train a small BPE tokenizer (Metaspace, so decoding restores the text exactly)."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=1)
    tok.train_from_iterator(list(texts), trainer=trainer)
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    if ids != [PAD_ID, BOS_ID, EOS_ID, UNK_ID]:
        raise RuntimeError(f"special token ids {ids} differ from the model's")
    return tok


def load_tokenizer(path: Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def encode(tok: Tokenizer, text: str, max_len: int) -> np.ndarray:
    """Return int64 (max_len + 1,) = BOS, ids..., EOS, PAD... (ids truncated to fit)."""
    ids = tok.encode(text).ids[: max_len - 1]
    row = [BOS_ID, *ids, EOS_ID]
    return np.asarray(row + [PAD_ID] * (max_len + 1 - len(row)), dtype=np.int64)


def decode(tok: Tokenizer, ids: Sequence[int]) -> str:
    """Token ids (generator output, with or without BOS/EOS/PAD) -> text."""
    return tok.decode(strip_ids(list(ids)), skip_special_tokens=True).strip()


def report_text(tok: Tokenizer, builder: ReportBuilder, ids: Sequence[int]) -> tuple[str, str]:
    """Return (text, reason): reason is "" unless the text is empty or names no known finding."""
    text = decode(tok, ids)
    if not text or not builder.parse(text):
        return text, EMPTY_REASON
    return text, ""


# --- metrics ----------------------------------------------------------------------------------


def bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 (sacrebleu, 0–100)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, 0–1)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    scores = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references, strict=True)]
    return float(np.mean(scores)) if scores else float("nan")


def label_check(
    builder: ReportBuilder, hypotheses: Sequence[str], true_codes: Sequence[Iterable[str]]
) -> dict[str, object]:
    """Parse each text back to codes; precision/recall/F1 per superclass vs the true codes.

    Returns {"per_superclass": {cls: {precision, recall, f1, support}}, "macro_f1", "statement_micro_f1"}.
    """
    per: dict[str, dict[str, float]] = {}
    pred_sets = [builder.parse(h) for h in hypotheses]
    true_sets = [set(c) for c in true_codes]
    for cls in SUPERCLASSES:
        p = np.array([cls in builder.superclasses(s) for s in pred_sets])
        t = np.array([cls in builder.superclasses(s) for s in true_sets])
        tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
        prec = tp / max(tp + fp, 1)
        rec = tp / max(tp + fn, 1)
        per[cls] = {
            "precision": round(prec, 4),
            "recall": round(rec, 4),
            "f1": round(2 * tp / max(2 * tp + fp + fn, 1), 4),
            "support": int(t.sum()),
        }
    tp = sum(len(p & t) for p, t in zip(pred_sets, true_sets, strict=True))
    n_pred = sum(len(p) for p in pred_sets)
    n_true = sum(len(t) for t in true_sets)
    supported = [v["f1"] for v in per.values() if v["support"] > 0]
    return {
        "per_superclass": per,
        "macro_f1": float(np.mean(supported)) if supported else float("nan"),
        "statement_micro_f1": 2 * tp / max(n_pred + n_true, 1),
    }
