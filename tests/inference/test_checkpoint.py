"""Checkpoint and resume in the loop driver, in process: interruptions, bad storage, corruption.

Every resumed run is compared with the uninterrupted run of the same call and
key (`checkpoint_runs.reference`), bit for bit: traces' values and scores as
bytes, every per-iteration statistic, log weights, evidence, VI's fit.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import warnings

import pytest

from genmlx import events
from genmlx.checkpoint.store import backup_path
from genmlx.checkpoint import (
    SCHEMA_VERSION, CheckpointError, CheckpointWarning, RunInterrupted, active, checkpointing, resume,
)
from inference.checkpoint_runs import EVERY, STEPS, call, digest, reference

ALGS = ["mh", "mh_compiled", "hmc", "nuts", "smc", "vi"]


def _stop_at(step: int, sig=signal.SIGINT):
    """A callback raising `sig` in this process after driver step `step` (as Ctrl-C or `kill` would)."""

    def cb(i, state, stats):
        if i == step:
            signal.raise_signal(sig)

    return cb


class Recorder:
    def __init__(self):
        self.checkpoints: list = []
        self.steps = 0
        self.ends: list = []

    def on_checkpoint(self, e):
        self.checkpoints.append(e)

    def on_step(self, e):
        self.steps += 1

    def on_run_end(self, e):
        self.ends.append(e)


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "run.db")


def test_signals_are_delivered_to_this_thread():
    assert threading.current_thread() is threading.main_thread()  # the handlers need the main thread


@pytest.mark.parametrize("alg", ALGS)
def test_interrupted_then_resumed_equals_the_uninterrupted_run_bit_for_bit(alg, db):
    stop = {"smc": 17}.get(alg, 42)
    with pytest.raises(RunInterrupted) as info:
        with checkpointing(db, every=EVERY):
            call(alg, callback=_stop_at(stop))
    e = info.value
    assert (e.signal, e.step, e.checkpoint) == ("SIGINT", stop + 1, db)
    assert e.result.steps == stop + 1 and len(next(iter(e.result.stats.values()))) >= stop + 1
    rec = Recorder()
    with events.subscribed(rec), resume(db):
        res = call(alg)
    assert digest(res) == reference(alg)
    assert rec.steps == STEPS[alg] - (stop + 1)  # continued where it stopped, not from the start
    assert rec.checkpoints[-1].step == STEPS[alg] and all(c.bytes > 0 and c.duration_s > 0 for c in rec.checkpoints)


def test_sigterm_stops_after_the_step_with_a_consistent_checkpoint(db):
    rec = Recorder()
    with events.subscribed(rec), pytest.raises(RunInterrupted) as info:
        with checkpointing(db, every=1000):  # only the interruption writes one
            call("mh", callback=_stop_at(61, signal.SIGTERM))
    assert info.value.signal == "SIGTERM" and info.value.step == 62
    assert [c.step for c in rec.checkpoints] == [62]
    assert rec.ends[-1].error is info.value
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handler is back
    with resume(db):
        assert digest(call("mh")) == reference("mh")


def test_without_checkpointing_a_signal_still_returns_the_partial_result():
    with pytest.raises(RunInterrupted) as info:
        call("hmc", callback=_stop_at(9))
    e = info.value
    assert e.checkpoint is None and e.result.steps == 10 and e.result.stats["accepted"][:10]
    assert isinstance(e, KeyboardInterrupt)  # an uncaught interruption still stops a script


def test_an_exception_in_a_step_keeps_the_last_checkpoint_and_the_partial_result(db):
    def boom(i, state, stats):
        if i == 23:
            raise ZeroDivisionError("in the step")

    rec = Recorder()
    with events.subscribed(rec), pytest.raises(ZeroDivisionError) as info:
        with checkpointing(db, every=EVERY):
            call("nuts", callback=boom)
    assert info.value.partial_result.steps == 24
    assert any("last checkpoint (step 20)" in n for n in info.value.__notes__)
    assert [c.step for c in rec.checkpoints] == [5, 10, 15, 20] and rec.ends[-1].error is info.value
    with resume(db):
        assert digest(call("nuts")) == reference("nuts")


def test_a_finished_run_is_returned_from_the_database_without_running(db):
    with checkpointing(db, every=50):
        first = call("vi")
    rec = Recorder()
    with events.subscribed(rec), resume(db):
        again = call("vi")
    assert digest(again) == digest(first) == reference("vi")
    assert rec.steps == 0 and rec.checkpoints == []


def test_resume_refuses_another_call_naming_what_differs(db):
    with checkpointing(db, every=EVERY):
        call("mh")
    with pytest.raises(CheckpointError, match=r"key: stored") as info, resume(db):
        call("mh", seed=8)
    assert db in str(info.value)
    with pytest.raises(CheckpointError, match=r"algorithm: stored 'mh', now 'vi'"), resume(db):
        call("vi")


def test_checkpointing_refuses_a_database_holding_a_run_unless_overwrite(db):
    with checkpointing(db, every=EVERY):
        call("vi")
    with pytest.raises(CheckpointError, match="already holds a checkpointed run.*resume"):
        with checkpointing(db):
            pass
    with checkpointing(db, every=EVERY, overwrite=True):
        assert digest(call("vi")) == reference("vi")


def test_bad_settings_and_paths_name_the_parameter_or_path(tmp_path):
    for kw, name in [({"every": 0}, "every"), ({"seconds": -1.0}, "seconds"), ({"keep": 0}, "keep"),
                     ({"every": 2.5}, "every")]:
        with pytest.raises(ValueError, match=f"checkpoint: {name} must be"):
            checkpointing(tmp_path / "x.db", **kw)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    bad = str(blocker / "run.db")
    with pytest.raises(CheckpointError, match="cannot open .*file/run.db"):
        with checkpointing(bad):
            pass
    with pytest.raises(CheckpointError, match="does not exist"), resume(tmp_path / "missing.db"):
        pass
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(CheckpointError, match=f"cannot open {junk} as a checkpoint database"), resume(junk):
        pass


def test_the_database_is_wal_sqlite_with_a_schema_version(db):
    with checkpointing(db, every=EVERY):
        call("smc")
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert [r[0] for r in con.execute("SELECT step FROM checkpoints ORDER BY seq")] == [25, 30]  # keep=2
    assert con.execute("SELECT count(*) FROM chunks").fetchone()[0] == 6  # one per checkpoint (5, 10, ..., 30), none rewritten
    con.close()


def test_a_full_disk_is_one_error_naming_the_path_and_the_earlier_checkpoint_survives(db):
    def fill(i, state, stats):
        if i == 12:  # the database may not grow any more: SQLite reports a full disk
            block = active()
            pages = block.store.db.execute("PRAGMA page_count").fetchone()[0]
            block.store.db.execute(f"PRAGMA max_page_count = {pages}")

    rec = Recorder()
    with events.subscribed(rec), pytest.raises(CheckpointError) as info:
        with checkpointing(db, every=EVERY):
            call("mh", callback=fill)
    msg = str(info.value)
    assert db in msg and "full" in msg and "intact" in msg
    failed = [c for c in rec.checkpoints if c.error is not None]
    assert len(failed) == 1 and failed[0].error is info.value and failed[0].bytes == 0
    assert [c.step for c in rec.checkpoints if c.error is None] == [5, 10]
    assert info.value.partial_result.steps == failed[0].step
    with resume(db):
        assert digest(call("mh")) == reference("mh")


def _corrupt_newest(path: str) -> int:
    con = sqlite3.connect(path)
    seq, step = con.execute("SELECT seq, step FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
    con.execute("UPDATE checkpoints SET blob = zeroblob(length(blob)) WHERE seq = ?", (seq,))
    con.commit()
    con.close()
    return step


def test_a_corrupt_checkpoint_without_backup_is_repaired_from_the_last_good_one_with_one_warning(db, tmp_path):
    with pytest.raises(RunInterrupted):
        with checkpointing(db, every=EVERY):
            call("hmc", callback=_stop_at(49))
    assert _corrupt_newest(db) == 50
    os.remove(backup_path(db))  # as a database written before backups: repaired in place
    rec = Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with events.subscribed(rec), resume(db):
            res = call("hmc")
    mine = [w for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(mine) == 1 and "step 50 fails its checksum" in str(mine[0].message)
    assert "step 45" in str(mine[0].message)
    assert rec.steps == STEPS["hmc"] - 45
    assert digest(res) == reference("hmc")
    assert list(tmp_path.glob("run.db.corrupt-*"))  # the damaged file is kept
    assert os.path.exists(backup_path(db))  # the repaired database is backed up again


def test_a_corrupt_checkpoint_is_replaced_by_the_backup_of_the_newest_with_one_warning(db, tmp_path):
    with pytest.raises(RunInterrupted):
        with checkpointing(db, every=EVERY):
            call("hmc", callback=_stop_at(49))
    assert _corrupt_newest(db) == 50
    rec = Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with events.subscribed(rec), resume(db):
            res = call("hmc")
    mine = [w for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(mine) == 1, [str(w.message) for w in mine]
    msg = str(mine[0].message)
    assert db in msg and backup_path(db) in msg and "step 50 fails its checksum" in msg and "run 0: step 50" in msg
    assert rec.steps == STEPS["hmc"] - 50  # the backup holds the newest checkpoint, intact
    assert digest(res) == reference("hmc")
    assert list(tmp_path.glob("run.db.corrupt-*"))


@pytest.mark.parametrize("size", [lambda n: n // 2, lambda n: 0], ids=["half", "empty"])
def test_a_truncated_database_resumes_from_its_backup_bit_for_bit_with_one_warning(db, tmp_path, size):
    with pytest.raises(RunInterrupted):
        with checkpointing(db, every=EVERY):
            call("smc", callback=_stop_at(20))
    with open(db, "r+b") as f:
        f.truncate(size(os.path.getsize(db)))
    rec = Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with events.subscribed(rec), resume(db):
            res = call("smc")
    mine = [w for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(mine) == 1, [str(w.message) for w in mine]
    msg = str(mine[0].message)
    assert f"{db} is damaged" in msg and f"its backup {backup_path(db)}" in msg and "run 0: step 21" in msg  # the interrupted run checkpointed after step 21
    assert rec.steps == STEPS["smc"] - 21
    assert digest(res) == reference("smc")
    assert list(tmp_path.glob("run.db.corrupt-*"))


def test_a_truncated_database_without_backup_is_detected_and_named(db):
    # SQLite refuses a file cut short anywhere (its header records the page count): no checkpoint in it can
    # be trusted, so without a backup resume names the file and what SQLite found instead of starting over.
    with pytest.raises(RunInterrupted):
        with checkpointing(db, every=EVERY):
            call("smc", callback=_stop_at(20))
    os.remove(backup_path(db))
    with open(db, "r+b") as f:
        f.truncate(os.path.getsize(db) * 9 // 10)
    with pytest.raises(CheckpointError, match=f"cannot open {db} as a checkpoint database.*malformed"):
        with resume(db):
            call("smc")


def test_a_new_checkpointed_run_discards_an_earlier_runs_backup(db):
    with checkpointing(db, every=EVERY):
        call("mh")
    assert os.path.exists(backup_path(db))
    with checkpointing(db, every=EVERY, overwrite=True):
        assert not os.path.exists(backup_path(db))


def test_the_backup_is_copied_whole_once_then_mirrors_each_checkpoint(db, monkeypatch):
    """Copying the whole database at every checkpoint made each cost grow with the run's samples: the
    backup is copied once and each later checkpoint writes its own rows to it."""
    from genmlx.checkpoint.store import Store

    copies = []
    whole = Store.backup
    monkeypatch.setattr(Store, "backup", lambda self: (copies.append(1), whole(self))[1])
    rec = Recorder()
    with events.subscribed(rec), checkpointing(db, every=EVERY):
        call("mh")
    assert len(rec.checkpoints) >= STEPS["mh"] // EVERY and len(copies) == 1

    def rows(path):
        con = sqlite3.connect(path)
        try:
            return [con.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in ("runs", "chunks")] + [
                con.execute("SELECT slot, seq, step, done, meta, body, blob, digest FROM checkpoints ORDER BY 1, 2")
                .fetchall()]
        finally:
            con.close()

    assert rows(backup_path(db)) == rows(db)  # the mirror holds every committed row


def test_a_failed_mirror_write_is_one_error_and_the_run_resumes_bit_for_bit(db, monkeypatch):
    from genmlx.checkpoint.store import Store

    mirror = Store._mirror
    failed = []

    def flaky(self, f):
        if not failed:
            failed.append(1)
            self._close_mirror()
            raise CheckpointError(f"checkpoint: writing to the backup {backup_path(self.path)} failed (test)")
        return mirror(self, f)

    monkeypatch.setattr(Store, "_mirror", flaky)
    with pytest.raises(CheckpointError, match="backup"):
        with checkpointing(db, every=EVERY):
            call("mh")
    with resume(db):
        res = call("mh")
    assert digest(res) == reference("mh")


def test_a_hot_journal_left_by_a_killed_mirror_write_is_not_applied_to_the_new_backup(tmp_path):
    """A run killed inside a mirror write leaves `<path>.bak-journal` (a hot rollback journal of the old
    backup). The resumed run copies the database to a new backup and renames it into place; SQLite
    would roll the old journal back into the new file ("database disk image is malformed": seen as a
    flaky SIGKILL test). The stale journal goes with the old backup."""
    import shutil

    from genmlx.checkpoint.store import Store

    path = str(tmp_path / "run.db")
    seq = [0]

    def save(store, n):
        for _ in range(n):
            seq[0] += 1
            body = "x" * 3000  # pages that move as rows come and go
            store.save(0, seq[0], seq[0], False, {"i": seq[0]}, (body, b"c" * 2000), seq[0] - 1, (body, b"s" * 2000), 3)

    store = Store(path, create=True)
    store.start_run(0, {"run": 1})
    save(store, 3)  # the backup is copied, then mirrors
    bak = backup_path(path)
    con = sqlite3.connect(bak, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    con.execute("DELETE FROM chunks")  # a mirror write in flight: its journal holds the old pages
    shutil.copy(bak + "-journal", path + ".hot")
    con.execute("ROLLBACK")
    con.close()
    save(store, 20)
    store.close()
    os.replace(path + ".hot", bak + "-journal")  # as the killed process left it
    store = Store(path, create=False)  # the resumed run: its first checkpoint copies the backup anew
    save(store, 1)
    assert not os.path.exists(bak + "-journal")  # the old backup's journal went with it
    save(store, 4)
    store.close()
    con = sqlite3.connect(bak)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT max(seq) FROM checkpoints").fetchone()[0] == seq[0]
    finally:
        con.close()
