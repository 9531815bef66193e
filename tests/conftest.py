import copy
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A tiny real trial: the 0.5M-parameter built-in Llama on a small genomics suite.
TINY_PLAN = {
    "name": "tiny",
    "backbone": {"name": "llama-0.5m"},
    "data": {"suite": "genomics", "sizes": {"cpt": 200, "sft": 200, "rl": 32, "id_test": 16, "ood_test": 16}},
    "budget": {"total": 6.0e10, "unit": "flops"},
    "allocation": {
        "shares": {"cpt": 0.0, "sft": 1.0, "rl": 0.0},
        "cpt": {"batch_size": 16, "lr": 3e-3},
        "sft": {"batch_size": 16, "lr": 3e-3},
        "rl": {"rank": 4, "batch_size": 2, "generations": 2, "max_completion_length": 16},
    },
    "eval": {"points": {"cpt": 1, "sft": 2, "rl": 1}, "batch_size": 32},
}


def _merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def tiny_config():
    """Build a TrialConfig from TINY_PLAN with nested overrides."""
    from ptplan.stages import TrialConfig

    def make(**over):
        return TrialConfig.from_dict(_merge(TINY_PLAN, over))

    return make
