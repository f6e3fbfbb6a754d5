import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

FULL_STRESS = os.environ.get("GENMLX_FULL_STRESS") == "1"


@pytest.fixture
def full_stress() -> bool:
    """True when stress cases should run at full size (GENMLX_FULL_STRESS=1); CI runs them reduced."""
    return FULL_STRESS
