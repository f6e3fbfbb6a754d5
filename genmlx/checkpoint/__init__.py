"""Checkpoint and resume for inference runs (SQLite, WAL, one transaction per checkpoint).

See `session` for the user-facing blocks, `store` for the database and its
integrity checks, `schema` for how algorithm state is written.
"""

from ..inference.interrupt import RunInterrupted
from .schema import SchemaError, register_type
from .session import active, checkpointing, resume
from .store import SCHEMA_VERSION, CheckpointError, CheckpointWarning

__all__ = [
    "checkpointing",
    "resume",
    "active",
    "register_type",
    "RunInterrupted",
    "CheckpointError",
    "CheckpointWarning",
    "SchemaError",
    "SCHEMA_VERSION",
]
