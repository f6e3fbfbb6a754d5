"""The checkpoint database: stdlib `sqlite3` in WAL mode, one transaction per checkpoint.

Tables (schema version `SCHEMA_VERSION`, in `meta`):

* `meta(key, value)`: the schema version and the checkpointing settings;
* `runs(slot, fingerprint, status)`: one row per driver run of the checkpointed
  block, in the order the block starts them (`running` or `done`);
* `chunks(slot, seq, ...)`: what checkpoint `seq` added to the run's kept
  samples and per-iteration statistics since checkpoint `seq - 1` (samples are
  written once, never rewritten);
* `checkpoints(slot, seq, step, done, ...)`: the whole algorithm state after
  driver step `step`; the newest `keep` per run are kept.

Every chunk and checkpoint row carries a BLAKE2 digest of its slot, sequence
number, step and contents. Reading verifies the digests (and, after SQLite's
own `quick_check` fails, reads what it still can): the newest checkpoint whose
row and chunks all verify is used, the damaged rows are dropped and one
warning says so. A write that fails (a full disk, a file size limit, an
unwritable path) rolls its transaction back, so the earlier checkpoints stay
as they were, and raises `CheckpointError` naming the path.

After the first committed checkpoint the whole database is copied
(`sqlite3.Connection.backup`) to `<path>.bak`, through a temporary file and
`os.replace`, so the backup is always a complete database; each later
checkpoint writes the same rows to the backup in a transaction of its own
(a mirror), so a checkpoint costs what its own rows cost, not the size of
the database (copying it whole made the thousandth checkpoint of a long run
cost several times the first). A failed mirror write rolls back (the backup
stays at the previous checkpoint) and the next checkpoint copies the database
whole again; so does any other write (settings, a new run). `open_for_resume`
uses the backup when the main file cannot be opened (truncated, not a
database), fails SQLite's check or a checksum, or holds no run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
import warnings
from typing import NamedTuple

__all__ = ["SCHEMA_VERSION", "CheckpointError", "CheckpointWarning", "Store", "Row", "backup_path",
           "open_for_resume"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (slot INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    slot INTEGER NOT NULL, seq INTEGER NOT NULL, first_step INTEGER NOT NULL, steps INTEGER NOT NULL,
    body TEXT NOT NULL, blob BLOB NOT NULL, digest BLOB NOT NULL, PRIMARY KEY (slot, seq));
CREATE TABLE IF NOT EXISTS checkpoints (
    slot INTEGER NOT NULL, seq INTEGER NOT NULL, step INTEGER NOT NULL, done INTEGER NOT NULL,
    created REAL NOT NULL, meta TEXT NOT NULL, body TEXT NOT NULL, blob BLOB NOT NULL, digest BLOB NOT NULL,
    PRIMARY KEY (slot, seq));
"""


class CheckpointError(OSError):
    """A checkpoint could not be written or read; the message names the path."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was found and an earlier good one is used."""


class Row(NamedTuple):
    seq: int
    step: int
    done: bool
    meta: dict
    body: str
    blob: bytes


def backup_path(path: str) -> str:
    """Where the copy of the last good checkpoint of the database at `path` is kept."""
    return os.fspath(path) + ".bak"


def _remove(path: str) -> None:
    for p in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


def _digest(slot: int, seq: int, step: int, body: str, blob: bytes) -> bytes:
    h = hashlib.blake2b(f"{slot}:{seq}:{step}:".encode(), digest_size=16)
    h.update(body.encode())
    h.update(blob)
    return h.digest()


def _transaction(db: sqlite3.Connection, f) -> None:
    """`f(db)` in one immediate transaction: committed whole, or rolled back and the error raised."""
    db.execute("BEGIN IMMEDIATE")
    try:
        f(db)
        db.execute("COMMIT")
    except BaseException:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise


class Store:
    """One open checkpoint database."""

    def __init__(self, path: str, *, create: bool):
        self.path = os.fspath(path)
        self._bak: sqlite3.Connection | None = None  # the backup, open while it mirrors the checkpoints
        if not create and not os.path.exists(self.path):
            raise CheckpointError(f"checkpoint: {self.path} does not exist (nothing to resume)")
        try:
            self.db = self._connect(self.path)
            self.db.executescript(_SCHEMA)
            v = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if v is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(v[0]) != SCHEMA_VERSION:
                raise CheckpointError(f"checkpoint: {self.path} has schema version {v[0]}; "
                                      f"this genmlx reads version {SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise CheckpointError(f"checkpoint: cannot open {self.path} as a checkpoint database: "
                                  f"{type(e).__name__}: {e}") from e

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"WAL mode unavailable (journal_mode={mode})")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def close(self) -> None:
        self._close_mirror()
        try:
            self.db.close()
        except sqlite3.Error:
            pass

    def _close_mirror(self) -> None:
        if self._bak is not None:
            try:
                self._bak.close()
            except sqlite3.Error:
                pass
            self._bak = None

    # -- settings and runs ----------------------------------------------------------------------
    def settings(self) -> dict:
        v = self.db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        return json.loads(v[0]) if v else {}

    def set_settings(self, settings: dict) -> None:
        self._write(lambda: self.db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)",
                                            (json.dumps(settings),)), "settings")

    def has_runs(self) -> bool:
        return self.db.execute("SELECT count(*) FROM runs").fetchone()[0] > 0

    def clear(self) -> None:
        def f():
            for t in ("runs", "chunks", "checkpoints"):
                self.db.execute(f"DELETE FROM {t}")
        self._write(f, "clearing")

    def run(self, slot: int) -> tuple[dict, str] | None:
        r = self.db.execute("SELECT fingerprint, status FROM runs WHERE slot = ?", (slot,)).fetchone()
        return (json.loads(r[0]), r[1]) if r else None

    def start_run(self, slot: int, fingerprint: dict) -> None:
        self._write(lambda: self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, 'running')",
                                            (slot, json.dumps(fingerprint))), f"run {slot}")

    # -- writing ----------------------------------------------------------------------------------
    def save(self, slot: int, seq: int, step: int, done: bool, meta: dict, chunk: tuple[str, bytes],
             first_step: int, state: tuple[str, bytes], keep: int) -> int:
        """Write one checkpoint (its chunk and state) in one transaction; returns the bytes written."""
        cb, cblob = chunk
        sb, sblob = state
        m = json.dumps(meta)
        now = time.time()
        chunk_row = (slot, seq, first_step, step - first_step, cb, cblob, _digest(slot, seq, first_step, cb, cblob))
        ckpt_row = (slot, seq, step, int(done), now, m, sb, sblob, _digest(slot, seq, step, m + sb, sblob))

        def f(db):
            db.execute("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", chunk_row)
            db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", ckpt_row)
            db.execute("DELETE FROM checkpoints WHERE slot = ? AND seq <= ?", (slot, seq - keep))
            if done:
                db.execute("UPDATE runs SET status = 'done' WHERE slot = ?", (slot,))

        self._write(lambda: f(self.db), f"the checkpoint at step {step}", keep_mirror=True)
        if self._bak is None:
            self.backup()
        else:
            self._mirror(f)
        return len(cb) + len(cblob) + len(m) + len(sb) + len(sblob)

    def _mirror(self, f) -> None:
        """Write the checkpoint just committed to the backup too, in one transaction of its own."""
        try:
            _transaction(self._bak, f)
        except sqlite3.Error as e:
            self._close_mirror()  # the backup holds the previous checkpoint; the next one copies anew
            raise CheckpointError(f"checkpoint: writing to the backup {backup_path(self.path)} failed "
                                  f"({type(e).__name__}: {e}); the checkpoints in {self.path} are intact") from e

    def backup(self) -> None:
        """Copy the committed database to `<path>.bak` atomically (a temporary file, then os.replace);
        the copy then stays open to mirror the next checkpoints."""
        self._close_mirror()
        bak = backup_path(self.path)
        tmp = bak + ".tmp"
        try:
            _remove(tmp)
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                self.db.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            finally:
                dst.close()
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            # a rollback journal the old backup's mirror left (a run killed inside a mirror write) is
            # that file's: SQLite would roll it back into the new one and corrupt it
            for stale in (bak + "-journal", bak + "-wal", bak + "-shm"):
                if os.path.exists(stale):
                    os.remove(stale)
            os.replace(tmp, bak)
            mirror = sqlite3.connect(bak, timeout=10.0, isolation_level=None, check_same_thread=False)
            mirror.execute("PRAGMA synchronous=FULL")
            self._bak = mirror
        except (sqlite3.Error, OSError) as e:
            _remove(tmp)
            raise CheckpointError(f"checkpoint: copying {self.path} to its backup {bak} failed "
                                  f"({type(e).__name__}: {e}); the checkpoints in {self.path} are intact") from e

    def discard_backup(self) -> None:
        """Remove a backup left by an earlier run of this path (it is not this run's)."""
        self._close_mirror()
        _remove(backup_path(self.path))

    def _write(self, f, what: str, keep_mirror: bool = False) -> None:
        if not keep_mirror:  # a write the backup does not mirror: the next checkpoint copies the database whole
            self._close_mirror()
        try:
            _transaction(self.db, lambda db: f())
        except sqlite3.Error as e:
            raise CheckpointError(f"checkpoint: writing {what} to {self.path} failed ({type(e).__name__}: {e}); "
                                  "the checkpoints written before it are intact") from e

    # -- reading ----------------------------------------------------------------------------------
    def load(self, slot: int) -> tuple[Row, list[Row]] | None:
        """The newest verified checkpoint of `slot` and its chunks in order (None: no checkpoint)."""
        try:
            seqs = [r[0] for r in self.db.execute(
                "SELECT seq FROM checkpoints WHERE slot = ? ORDER BY seq DESC", (slot,))]
        except sqlite3.Error as e:
            raise CheckpointError(f"checkpoint: cannot read {self.path}: {type(e).__name__}: {e}") from e
        for seq in seqs:
            got = self._verified(slot, seq)
            if got is not None:
                return got
        if seqs:
            raise CheckpointError(f"checkpoint: no checkpoint of run {slot} in {self.path} passes its checksum")
        return None

    def _verified(self, slot: int, seq: int):
        try:
            r = self.db.execute("SELECT step, done, meta, body, blob, digest FROM checkpoints "
                                "WHERE slot = ? AND seq = ?", (slot, seq)).fetchone()
            if r is None or _digest(slot, seq, r[0], r[2] + r[3], r[4]) != r[5]:
                return None
            chunks = []
            for i in range(seq + 1):
                c = self.db.execute("SELECT first_step, steps, body, blob, digest FROM chunks "
                                    "WHERE slot = ? AND seq = ?", (slot, i)).fetchone()
                if c is None or _digest(slot, i, c[0], c[2], c[3]) != c[4]:
                    return None
                chunks.append(Row(i, c[0], False, {}, c[2], c[3]))
            return Row(seq, r[0], bool(r[1]), json.loads(r[2]), r[3], r[4]), chunks
        except (sqlite3.Error, ValueError):
            return None

    def check(self) -> list[str]:
        """Problems found: SQLite's quick_check, then every run's newest checkpoint and chunks."""
        problems = []
        try:
            res = [r[0] for r in self.db.execute("PRAGMA quick_check")]
            if res != ["ok"]:
                problems.append("SQLite quick_check: " + "; ".join(res[:3]))
        except sqlite3.Error as e:
            problems.append(f"SQLite quick_check failed: {e}")
        try:
            rows = self.db.execute("SELECT slot, seq, step FROM checkpoints ORDER BY slot, seq DESC").fetchall()
        except sqlite3.Error as e:
            return problems + [f"cannot list the checkpoints: {e}"]
        newest: dict = {}
        for slot, seq, step in rows:
            if slot not in newest:
                newest[slot] = (seq, step)
                if self._verified(slot, seq) is None:
                    problems.append(f"run {slot}: the checkpoint at step {step} fails its checksum")
        return problems

    def repair(self, problems: list[str]) -> None:
        """Keep each run's newest good checkpoint (and its chunks) in a fresh file; one warning.

        The damaged file is kept beside it as `<path>.corrupt-<time>`.
        """
        good = {}
        try:
            runs = self.db.execute("SELECT slot, fingerprint, status FROM runs").fetchall()
            settings = self.settings()
        except sqlite3.Error as e:
            raise CheckpointError(f"checkpoint: {self.path} is damaged beyond use ({e}); "
                                  "delete it to start the run again") from e
        used = []
        for slot, fp, status in runs:
            try:
                got = self.load(slot)
            except CheckpointError:
                got = None
            good[slot] = (fp, got)
            used.append(f"run {slot}: " + (f"step {got[0].step}" if got else "from the start"))
        self.close()
        aside = f"{self.path}.corrupt-{int(time.time())}"
        os.replace(self.path, aside)
        for ext in ("-wal", "-shm"):
            if os.path.exists(self.path + ext):
                os.replace(self.path + ext, aside + ext)
        fresh = Store(self.path, create=True)
        fresh.set_settings(settings)
        for slot, (fp, got) in good.items():
            fresh.start_run(slot, json.loads(fp))
            if got is None:
                continue
            row, chunks = got

            def f(slot=slot, row=row, chunks=chunks):
                for c in chunks:
                    fresh.db.execute("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     (slot, c.seq, c.step, 0, c.body, c.blob,
                                      _digest(slot, c.seq, c.step, c.body, c.blob)))
                m = json.dumps(row.meta)
                fresh.db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 (slot, row.seq, row.step, int(row.done), time.time(), m, row.body, row.blob,
                                  _digest(slot, row.seq, row.step, m + row.body, row.blob)))
                if row.done:
                    fresh.db.execute("UPDATE runs SET status = 'done' WHERE slot = ?", (slot,))

            fresh._write(f, f"the recovered checkpoint of run {slot}")
        self._close_mirror()
        self.db = fresh.db
        warnings.warn(f"checkpoint: {self.path} is damaged ({'; '.join(problems)}); resuming from the last "
                      f"good checkpoints ({', '.join(used)}); the damaged file is kept as {aside}",
                      CheckpointWarning, stacklevel=4)


def _summary(store: Store) -> str:
    used = []
    for (slot,) in store.db.execute("SELECT slot FROM runs ORDER BY slot").fetchall():
        got = store.load(slot)
        used.append(f"run {slot}: " + (f"step {got[0].step}" if got else "from the start"))
    return ", ".join(used)


def _problems(path: str):
    """`(store, problems, error)`: `path` opened and checked (store None: it cannot be opened)."""
    try:
        store = Store(path, create=False)
    except CheckpointError as e:
        return None, [str(e)], e
    return store, store.check(), None


def open_for_resume(path: str) -> Store:
    """The checkpoint database at `path`, checked; damaged, it is replaced by its backup or repaired.

    When the main file cannot be opened, fails SQLite's check or a checksum,
    or holds no run, and `<path>.bak` passes every check, the backup is copied
    over it (the damaged file is kept as `<path>.corrupt-<time>`) with one
    `CheckpointWarning` naming both. Without a usable backup, a file that
    opens is repaired in place (`Store.repair`); one that does not raises.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint: {path} does not exist (nothing to resume)")
    store, problems, error = _problems(path)
    bak = backup_path(path)
    if not problems and store.has_runs():
        return store
    if not problems and os.path.exists(bak):  # emptied (a file cut to nothing opens as a new database)
        problems = [f"{path} holds no run"]
    if not problems:
        return store
    if os.path.exists(bak):
        tmp = path + ".restore.tmp"
        _remove(tmp)
        shutil.copyfile(bak, tmp)
        copy, bad, _ = _problems(tmp)
        if copy is not None and not bad:
            used = _summary(copy)
            copy.close()
            if store is not None:
                store.close()
            aside = f"{path}.corrupt-{int(time.time())}"
            for ext in ("", "-wal", "-shm"):
                if os.path.exists(path + ext):
                    os.replace(path + ext, aside + ext)
            os.replace(tmp, path)
            warnings.warn(f"checkpoint: {path} is damaged ({'; '.join(problems)}); resuming from its backup "
                          f"{bak} ({used}); the damaged file is kept as {aside}", CheckpointWarning, stacklevel=4)
            return Store(path, create=False)
        if copy is not None:
            copy.close()
        _remove(tmp)
    if store is None:
        raise error
    store.repair(problems)
    store.backup()
    return store
