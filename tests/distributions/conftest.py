import os
import sys

import mlx.core as mx
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def key():
    return mx.random.key(20240611)
