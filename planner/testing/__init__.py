"""Test and benchmark helpers (like `optuna.testing`): synthetic trial tables, curves and studies,
and the replay harness that scores search strategies against a recorded grid. Not used by the
product packages."""

from ._studies import MICRO_SETS, synthetic_study
from ._models import tiny_chat_model
from ._tables import synthetic_curve, synthetic_curves, synthetic_table

__all__ = ["MICRO_SETS", "synthetic_curve", "synthetic_curves", "synthetic_study", "synthetic_table", "tiny_chat_model"]
