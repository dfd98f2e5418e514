"""The 71 PTB-XL SCP-ECG statements clinicians assign as diagnostic labels.

The table lives in ``inference.clinical.scp`` (the lowest layer that reads it: the decoder-text
checker uses it too), so exported labels and the models speak the same codes.
"""

from __future__ import annotations

from inference.clinical.scp import SCP_CODES, SCP_STATEMENTS, SCP_STATEMENTS_CSV, ScpStatement

__all__ = ["SCP_CODES", "SCP_STATEMENTS", "SCP_STATEMENTS_CSV", "ScpStatement"]
