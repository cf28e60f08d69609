"""Edges of data_fetch found by bad-input trials (issue 13), against the local HTTP server.

A bad first download of a data set without a published checksum records nothing; a recorded hash
can be forgotten; leftovers of a killed run are removed (a partial archive is resumed); two fetches
of one data set take turns; a malformed Content-Length is survived; a trickling server is stopped.
The server and the archive builders are those of tests/test_data_fetch.py. Expected hashes come
from hashlib, never from data_fetch. No test asserts on timing: slow paths are bounded by the
server's HANG_LIMIT_S, so a broken implementation fails on the message instead of hanging.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data_fetch
from data_fetch.registry import REGISTRY
from test_data_fetch import (HANG_LIMIT_S, isic_entry, leftovers, make_isic_zips, make_msd_tar,
                             msd_entry, server)  # noqa: F401 (server is a fixture)

REPO = Path(__file__).resolve().parents[1]
NOT_VERIFIED = "could not be verified: it was deleted and no hash was recorded"


# --- bad first downloads of a data set without a published checksum -------------------------------
def _flip_inside_first_mask(masks: bytes) -> bytes:
    """Flip one byte inside the first PNG of a stored (uncompressed) zip: its CRC-32 then fails."""
    with zipfile.ZipFile(io.BytesIO(masks)) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".png"))
        png = zf.read(name)
    at = masks.index(png) + len(png) // 2
    return masks[:at] + bytes([masks[at] ^ 0xFF]) + masks[at + 1:]


def _masks_with_value(value: int, ids=("ISIC_0000000", "ISIC_0000001"), size=(12, 10)) -> bytes:
    """Ground-truth zip whose masks hold 0 and ``value`` (the reader accepts only 0/255 or 0/1)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zm:
        for image_id in ids:
            mask = np.zeros((size[1], size[0]), dtype=np.uint8)
            mask[2:6, 3:8] = value
            png = io.BytesIO()
            Image.fromarray(mask).save(png, format="PNG")
            zm.writestr(f"ISIC2018_Task1_Training_GroundTruth/{image_id}_segmentation.png",
                        png.getvalue())
    return buffer.getvalue()


BAD_MASKS = {
    "html-error-page": (lambda masks: b"<html><body>Access denied</body></html>",
                        "not a readable archive"),
    "truncated": (lambda masks: masks[: len(masks) // 2], "not a readable archive"),
    "bad-crc": (_flip_inside_first_mask, "not a readable archive.*CRC"),
    "unpaired": (lambda masks: make_isic_zips(ids=("ISIC_0000000",))[1], "do not pair up"),
    "not-binary": (lambda masks: _masks_with_value(128), "not readable by the course.*binary"),
}


@pytest.mark.parametrize("case", sorted(BAD_MASKS))
def test_bad_first_download_records_no_hash_and_the_good_file_is_accepted_later(server, tmp_path,
                                                                                  case):
    images, masks = make_isic_zips()
    spoil, reason = BAD_MASKS[case]
    registry = isic_entry(server, images, spoil(masks))
    with pytest.raises(data_fetch.FetchError, match=f"{reason}.*{NOT_VERIFIED}.*same command"):
        data_fetch.fetch("tiny-isic", dest=tmp_path, timeout=5, progress=False, registry=registry)
    assert not (tmp_path / data_fetch.LOCK_NAME).exists()
    assert leftovers(tmp_path) == []            # both unverified archives deleted, no staging left
    assert not (tmp_path / "ISIC_Tiny").exists()

    server.files["gt.zip"] = masks              # the server now sends the good file
    root = data_fetch.fetch("tiny-isic", dest=tmp_path, timeout=5, progress=False, registry=registry)
    assert len(list((root / "masks").iterdir())) == 2
    lock = json.loads((tmp_path / data_fetch.LOCK_NAME).read_text())
    assert lock[server.url("gt.zip")]["sha256"] == hashlib.sha256(masks).hexdigest()
    assert lock[server.url("in.zip")]["sha256"] == hashlib.sha256(images).hexdigest()


def test_recorded_hash_mismatch_says_how_to_forget_it_and_forget_lock_does(server, tmp_path,
                                                                           monkeypatch, capsys):
    images, masks = make_isic_zips()
    for name, entry in isic_entry(server, images, masks).items():
        monkeypatch.setitem(REGISTRY, name, entry)
    args = ["tiny-isic", "--dest", str(tmp_path), "--timeout", "5"]
    assert data_fetch.main(args) == 0
    lock_path = tmp_path / data_fetch.LOCK_NAME
    recorded = json.loads(lock_path.read_text())
    new_images, _ = make_isic_zips(seed=1)       # the distributor publishes a new version
    server.files["in.zip"] = new_images
    shutil.rmtree(tmp_path / "ISIC_Tiny")                    # so that fetch downloads again
    capsys.readouterr()
    assert data_fetch.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    when = recorded[server.url("in.zip")]["recorded_utc"]
    assert re.search(f"expected {hashlib.sha256(images).hexdigest()}, got "
                     f"{hashlib.sha256(new_images).hexdigest()}.*recorded in "
                     f"{re.escape(str(lock_path))} on {re.escape(when)}.*--forget-lock", err[0])
    assert json.loads(lock_path.read_text()) == recorded      # a mismatch changes nothing

    assert data_fetch.main(args + ["--forget-lock"]) == 0
    lock = json.loads(lock_path.read_text())
    assert lock[server.url("in.zip")]["sha256"] == hashlib.sha256(new_images).hexdigest()
    assert lock[server.url("gt.zip")]["sha256"] == hashlib.sha256(masks).hexdigest()


# --- leftovers of a killed run ----------------------------------------------------------------------
def test_leftovers_of_a_killed_run_are_removed_and_the_partial_archive_resumed(server, tmp_path):
    data = make_msd_tar(tmp_path)
    registry = msd_entry(server, data)
    dest = tmp_path / "data"
    stale = dest / ".Task99_Tiny.k1ll3d_x.preparing" / "archive0" / "Task99_Tiny"
    stale.mkdir(parents=True)
    (stale / "half.nii.gz").write_bytes(b"half a file")
    lock_write = dest / ".data_fetch.a1b2c3.part.lock.json"     # a lock-file write cut short
    lock_write.write_text('{"half')
    other = dest / ".Task98_Other.zzz.preparing"                 # another data set's: not ours
    other.mkdir()
    (dest / "downloads").mkdir()
    (dest / "downloads" / "Task99_Tiny.tar.part").write_bytes(data[:1000])

    root = data_fetch.fetch("tiny-msd", dest=dest, timeout=5, progress=False, registry=registry)
    assert (root / "dataset.json").is_file()
    assert not stale.parents[1].exists() and not lock_write.exists()
    assert other.is_dir()
    assert server.requests_for("Task99_Tiny.tar") == [("Task99_Tiny.tar", "bytes=1000-")]
    assert leftovers(dest) == sorted(str(p.relative_to(dest)) for p in root.rglob("*")
                                     if p.is_file())
    assert not (dest / data_fetch.LOCK_NAME).exists()   # published checksum: nothing to record


# --- two fetches of one data set at the same time -------------------------------------------------
def test_two_concurrent_fetches_take_turns_and_download_once(server, tmp_path, capsys):
    registry = msd_entry(server, make_msd_tar(tmp_path))
    server.hold.add("Task99_Tiny.tar")
    dest = tmp_path / "data"
    results = {}

    def run(key):
        try:
            results[key] = data_fetch.fetch("tiny-msd", dest=dest, timeout=5, progress=False,
                                            registry=registry)
        except BaseException as error:  # noqa: BLE001 (reported by the asserts below)
            results[key] = error

    first = threading.Thread(target=run, args=("first",))
    first.start()
    assert server.holding.wait(HANG_LIMIT_S)          # the first holds the lock, mid-download
    second = threading.Thread(target=run, args=("second",))
    second.start()
    err, give_up = "", time.monotonic() + HANG_LIMIT_S
    while "waiting for a fetch of tiny-msd" not in err and time.monotonic() < give_up:
        time.sleep(0.02)
        err += capsys.readouterr().err
    server.release_hold.set()
    first.join(HANG_LIMIT_S)
    second.join(HANG_LIMIT_S)
    assert "waiting for a fetch of tiny-msd" in err and "Task99_Tiny.lock" in err
    assert results == {"first": dest / "Task99_Tiny", "second": dest / "Task99_Tiny"}
    assert len(server.requests_for("Task99_Tiny.tar")) == 1


HOLD_LOCK = """
import sys, time
from data_fetch.mutex import exclusive_lock
with exclusive_lock(sys.argv[1], timeout=1, what="a test"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_of_another_process_times_out_clearly_and_a_killed_holder_blocks_nothing(server,
                                                                                       tmp_path):
    pytest.importorskip("fcntl")
    registry = msd_entry(server, make_msd_tar(tmp_path))
    dest = tmp_path / "data"
    dest.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(dest / ".Task99_Tiny.lock")],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(data_fetch.FetchError, match=r"a fetch of tiny-msd into .* still holds "
                                                        r".*\.Task99_Tiny\.lock after 0\.2 s.*"
                                                        r"--lock-timeout"):
            data_fetch.fetch("tiny-msd", dest=dest, timeout=5, lock_timeout=0.2, progress=False,
                             registry=registry)
        assert server.requests == []
    finally:
        holder.kill()                    # SIGKILL on POSIX: the holder cleans nothing up
        holder.wait()
        holder.stdout.close()
    root = data_fetch.fetch("tiny-msd", dest=dest, timeout=5, lock_timeout=5, progress=False,
                            registry=registry)
    assert (root / "dataset.json").is_file()


# --- malformed headers and slow servers -------------------------------------------------------------
def test_malformed_content_length_is_ignored_with_a_warning_and_the_file_still_verified(server,
                                                                                        tmp_path):
    data = make_msd_tar(tmp_path)
    registry = msd_entry(server, data)
    server.header["Task99_Tiny.tar"] = ("Content-Length", "abc")
    url = re.escape(server.url("Task99_Tiny.tar"))
    with pytest.warns(RuntimeWarning, match=rf"malformed Content-Length header \('abc'\) for {url}"):
        root = data_fetch.fetch("tiny-msd", dest=tmp_path / "a", timeout=5, progress=False,
                                registry=registry)
    assert (root / "imagesTr" / "BRATS_002.nii.gz").is_file()

    server.wrong_bytes.add("Task99_Tiny.tar")    # wrong bytes behind the bad header: still caught
    with pytest.warns(RuntimeWarning, match="malformed Content-Length"), \
            pytest.raises(data_fetch.ChecksumMismatchError,
                          match=f"expected {hashlib.md5(data).hexdigest()}"):
        data_fetch.fetch("tiny-msd", dest=tmp_path / "b", timeout=5, progress=False,
                         registry=registry)
    assert leftovers(tmp_path / "b") == []


def test_cli_prints_the_content_length_warning_in_one_line(server, tmp_path, monkeypatch, capsys):
    for name, entry in msd_entry(server, make_msd_tar(tmp_path)).items():
        monkeypatch.setitem(REGISTRY, name, entry)
    server.header["Task99_Tiny.tar"] = ("Content-Length", "-5")
    assert data_fetch.main(["tiny-msd", "--dest", str(tmp_path / "d"), "--timeout", "5"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("data_fetch: warning: the server sent a malformed Content-Length "
                             "header ('-5')")


def test_trickling_server_is_stopped_by_the_minimum_speed_and_the_rerun_resumes(server, tmp_path):
    data = make_msd_tar(tmp_path)
    registry = msd_entry(server, data)
    server.trickle["Task99_Tiny.tar"] = 0.02    # one byte per 20 ms: about 50 bytes/s
    dest = tmp_path / "data"
    with pytest.raises(data_fetch.NetworkError,
                       match=r"too slow: \d+ bytes/s over the last [\d.]+ s \(the minimum is 1000 "
                             r"bytes/s\)\. Run the same command again: the partial download .* is "
                             r"kept and it resumes.*--min-speed 0"):
        data_fetch.fetch("tiny-msd", dest=dest, timeout=1, progress=False, registry=registry)
    assert len(server.requests_for("Task99_Tiny.tar")) == 1   # no retry against a slow server
    kept = (dest / "downloads" / "Task99_Tiny.tar.part").stat().st_size
    assert 0 < kept < len(data)

    del server.trickle["Task99_Tiny.tar"]
    root = data_fetch.fetch("tiny-msd", dest=dest, timeout=5, progress=False, registry=registry)
    assert server.requests_for("Task99_Tiny.tar")[-1] == ("Task99_Tiny.tar", f"bytes={kept}-")
    assert (root / "dataset.json").is_file()                  # and the MD5 matched


def test_total_deadline_stops_a_download_that_never_stalls(server, tmp_path, monkeypatch, capsys):
    for name, entry in msd_entry(server, make_msd_tar(tmp_path)).items():
        monkeypatch.setitem(REGISTRY, name, entry)
    server.trickle["Task99_Tiny.tar"] = 0.02
    dest = tmp_path / "data"
    assert data_fetch.main(["tiny-msd", "--dest", str(dest), "--timeout", "5", "--min-speed", "0",
                            "--deadline", "0.5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert re.search(r"did not finish within the deadline of 0\.5 s\. Run the same command again: "
                     r"the partial download .* is kept and it resumes; or allow more time with "
                     r"--deadline S", err[0])
    assert (dest / "downloads" / "Task99_Tiny.tar.part").stat().st_size > 0
    assert not (dest / "Task99_Tiny").exists()


def test_bad_new_arguments_name_the_argument(tmp_path):
    options = {"dest": tmp_path, "progress": False}
    with pytest.raises(ValueError, match="deadline must be a positive number of seconds or None, "
                                         "got 0"):
        data_fetch.fetch("msd-hippocampus", deadline=0, **options)
    with pytest.raises(ValueError, match="min_speed must be a number of bytes per second >= 0, "
                                         "got -1"):
        data_fetch.fetch("msd-hippocampus", min_speed=-1, **options)
    with pytest.raises(ValueError, match="lock_timeout must be a number of seconds >= 0, got nan"):
        data_fetch.fetch("msd-hippocampus", lock_timeout=float("nan"), **options)
    with pytest.raises(TypeError, match="forget_lock must be a bool, got str"):
        data_fetch.fetch("msd-hippocampus", forget_lock="yes", **options)
    assert data_fetch.main(["msd-brain", "--min-speed", "-1"]) == 2
    assert data_fetch.main(["msd-brain", "--deadline", "0"]) == 2
    assert list(tmp_path.iterdir()) == []       # nothing written, no request made
