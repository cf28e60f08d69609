"""Tests of data_fetch.fetch and its CLI against a local HTTP server (no internet needed).

The server runs on 127.0.0.1 (port 0) in a thread, supports ``Range: bytes=N-``, and can be told
to cut a response half-way, to serve wrong bytes, or to hang. The archives are built here in the
real layouts (an MSD-like tar with nibabel, ISIC-like zips with PIL); expected hashes come from
hashlib on those bytes, never from data_fetch.
"""
from __future__ import annotations

import hashlib
import importlib.util
import http.server
import io
import json
import re
import shutil
import socket
import tarfile
import threading
import time
import zipfile
from collections import namedtuple
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import data_fetch
from data_fetch import download as download_module
from data_fetch.registry import REGISTRY, DatasetEntry, Source

HANG_LIMIT_S = 5.0   # a hanging response never lasts longer than this, even if teardown fails


# --- the local server -----------------------------------------------------------------------------
class LocalServer:
    """A tiny file server with knobs: cut the first response, serve wrong bytes, hang, hold the
    body until told, trickle one byte at a time, or send a header of our choosing."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_first: set[str] = set()
        self.wrong_bytes: set[str] = set()
        self.hang: set[str] = set()
        self.ignore_range: set[str] = set()
        self.hold: set[str] = set()              # send the body only after release_hold is set
        self.holding = threading.Event()          # set when a held request has arrived
        self.release_hold = threading.Event()
        self.trickle: dict[str, float] = {}       # name -> seconds between single bytes
        self.header: dict[str, tuple[str, str]] = {}   # name -> (header, value) replacing ours
        self.requests: list[tuple[str, str | None]] = []
        self.release = threading.Event()
        self._already_cut: set[str] = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name in server.hang:
                    server.release.wait(timeout=HANG_LIMIT_S)
                    return
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                if name in server.wrong_bytes:
                    data = bytes(b ^ 0xFF for b in data)
                start = 0
                range_header = self.headers.get("Range")
                if range_header and name not in server.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                header, value = server.header.get(name, ("Content-Length", str(len(body))))
                self.send_header(header, value)
                self.end_headers()
                if name in server.hold:
                    server.holding.set()
                    server.release_hold.wait(timeout=HANG_LIMIT_S)
                if name in server.trickle:
                    self.send_trickle(body, server.trickle[name])
                    return
                if name in server.cut_first and name not in server._already_cut:
                    server._already_cut.add(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def send_trickle(self, body: bytes, pause_s: float):
                """One byte per pause, for at most HANG_LIMIT_S (then the connection closes)."""
                ends_at = time.monotonic() + HANG_LIMIT_S
                try:
                    for i in range(len(body)):
                        if server.release.is_set() or time.monotonic() > ends_at:
                            break
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(pause_s)
                except (BrokenPipeError, ConnectionResetError):   # the client gave up: fine
                    pass
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def requests_for(self, name: str) -> list:
        return [r for r in self.requests if r[0] == name]

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.release.set()
        self.release_hold.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=HANG_LIMIT_S)


@pytest.fixture()
def server():
    srv = LocalServer().start()
    try:
        yield srv
    finally:
        srv.stop()


# --- archives in the real layouts -----------------------------------------------------------------
def make_msd_tar(folder: Path, *, task: str = "Task99_Tiny", shape=(8, 7, 6)) -> bytes:
    """A tar laid out like the Decathlon's: dataset.json, imagesTr, labelsTr, imagesTs, ._ junk."""
    root = folder / "msd_src" / task
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    training = []
    for case in ("BRATS_001", "BRATS_002"):
        image = rng.random((*shape, 4)).astype(np.float32)
        label = rng.integers(0, 4, size=shape).astype(np.uint8)
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"{case}.nii.gz")
        (root / "imagesTr" / f"._{case}.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS junk")
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    nib.save(nib.Nifti1Image(rng.random((*shape, 4)).astype(np.float32), affine),
             root / "imagesTs" / "BRATS_100.nii.gz")
    (root / "dataset.json").write_text(json.dumps(
        {"name": "Tiny", "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
         "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor",
                    "3": "enhancing tumour"},
         "numTraining": 2, "numTest": 1, "training": training,
         "test": ["./imagesTs/BRATS_100.nii.gz"]}))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(root, arcname=task)
    return buffer.getvalue()


def make_isic_zips(*, ids=("ISIC_0000000", "ISIC_0000001"), size=(12, 10), seed=0):
    """Two zips laid out like ISIC 2018 Task 1: training input (jpg) and ground truth (png 0/255)."""
    rng = np.random.default_rng(seed)
    images, masks = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(images, "w") as zi, zipfile.ZipFile(masks, "w") as zm:
        zi.writestr("ISIC2018_Task1-2_Training_Input/", "")
        zi.writestr("ISIC2018_Task1-2_Training_Input/ATTRIBUTION.txt", "images by ISIC")
        zm.writestr("ISIC2018_Task1_Training_GroundTruth/LICENSE.txt", "CC-BY-NC")
        for image_id in ids:
            rgb = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            jpg = io.BytesIO()
            Image.fromarray(rgb).save(jpg, format="JPEG")
            zi.writestr(f"ISIC2018_Task1-2_Training_Input/{image_id}.jpg", jpg.getvalue())
            mask = np.zeros((size[1], size[0]), dtype=np.uint8)
            mask[2:6, 3:8] = 255
            png = io.BytesIO()
            Image.fromarray(mask).save(png, format="PNG")
            zm.writestr(f"ISIC2018_Task1_Training_GroundTruth/{image_id}_segmentation.png",
                        png.getvalue())
    return images.getvalue(), masks.getvalue()


def msd_entry(server: LocalServer, data: bytes, *, name="tiny-msd", filename="Task99_Tiny.tar",
              checksum="auto") -> dict:
    server.files[filename] = data
    md5 = hashlib.md5(data).hexdigest() if checksum == "auto" else checksum
    entry = DatasetEntry(
        name=name, title="tiny MSD-like", layout="msd", folder="Task99_Tiny",
        files=(Source(url=server.url(filename), filename=filename, size_bytes=len(data),
                      checksum=md5, algorithm="md5", checksum_source="test"),),
        licence="CC0", citation="test", homepage="http://127.0.0.1/", needs_gpu="no")
    return {name: entry}


def isic_entry(server: LocalServer, images: bytes, masks: bytes) -> dict:
    server.files["in.zip"], server.files["gt.zip"] = images, masks
    files = tuple(Source(url=server.url(f), filename=f, size_bytes=len(server.files[f]),
                         checksum=None, algorithm="sha256", checksum_source="none published")
                  for f in ("in.zip", "gt.zip"))
    entry = DatasetEntry(name="tiny-isic", title="tiny ISIC-like", layout="isic",
                         folder="ISIC_Tiny", files=files, licence="CC0", citation="test",
                         homepage="http://127.0.0.1/", needs_gpu="no")
    return {"tiny-isic": entry}


def leftovers(dest: Path) -> list:
    """Everything under dest (what a failed fetch must not leave) except the lock file and the
    empty files that carry the OS locks (``.<folder>.lock``; they must stay, see data_fetch.mutex)."""
    def os_lock(p: Path) -> bool:
        return p.name.startswith(".") and p.name.endswith(".lock") and p.stat().st_size == 0

    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*")
                  if p.is_file() and p.name != data_fetch.LOCK_NAME and not os_lock(p))


# --- the tests ------------------------------------------------------------------------------------
def test_clean_download_gives_msd_layout_readable_by_course_readers(server, tmp_path):
    registry = msd_entry(server, make_msd_tar(tmp_path))
    dest = tmp_path / "data"
    root = data_fetch.fetch("tiny-msd", dest=dest, timeout=5, progress=True, registry=registry)
    assert root == dest / "Task99_Tiny"
    assert (root / "dataset.json").is_file()
    assert not list(root.rglob("._*"))                      # macOS junk skipped
    assert not (dest / "downloads" / "Task99_Tiny.tar").exists()   # archive removed after success
    participants = pd.read_csv(root / "participants.tsv", sep="\t", dtype=str)
    assert list(participants.columns) == ["case_id", "patient_id", "site", "age", "sex"]
    assert participants["case_id"].tolist() == ["BRATS_001", "BRATS_002"]
    assert (participants["patient_id"] == participants["case_id"]).all()
    assert (participants["site"] == "unknown").all() and (participants["sex"] == "unknown").all()
    image = nib.load(root / "imagesTr" / "BRATS_001.nii.gz")
    assert image.shape == (8, 7, 6, 4)
    label = np.asarray(nib.load(root / "labelsTr" / "BRATS_001.nii.gz").dataobj)
    assert set(np.unique(label)) <= {0, 1, 2, 3}

    io_module = pytest.importorskip("medseg_edu.data.io")
    if hasattr(io_module, "list_brain_cases"):
        cases = io_module.list_brain_cases(root)
        assert cases["case_id"].tolist() == ["BRATS_001", "BRATS_002"]
        assert cases["patient_id"].tolist() == ["BRATS_001", "BRATS_002"]
        assert all(Path(p).is_file() for p in cases["label_path"])
        case = io_module.load_brain_case(cases["image_path"][0], cases["label_path"][0])
        assert case["image"].shape == (4, 8, 7, 6)
        assert case["spacing_mm"] == pytest.approx((1.0, 1.0, 1.5))


def test_second_call_returns_at_once_without_any_request(server, tmp_path):
    registry = msd_entry(server, make_msd_tar(tmp_path))
    dest = tmp_path / "data"
    first = data_fetch.fetch("tiny-msd", dest=dest, timeout=5, progress=False, registry=registry)
    count = len(server.requests)
    server.stop()                       # even with the server gone, the second call succeeds
    second = data_fetch.fetch("tiny-msd", dest=dest, timeout=5, progress=False, registry=registry)
    assert second == first
    assert len(server.requests) == count


def test_interrupted_download_resumes_with_range_and_correct_hash(server, tmp_path):
    data = make_msd_tar(tmp_path)
    registry = msd_entry(server, data)
    server.cut_first.add("Task99_Tiny.tar")
    root = data_fetch.fetch("tiny-msd", dest=tmp_path / "data", timeout=5, progress=False,
                            registry=registry)
    calls = server.requests_for("Task99_Tiny.tar")
    assert len(calls) == 2
    assert calls[0][1] is None
    assert calls[1][1] == f"bytes={len(data) // 2}-"     # asked only for the missing half
    assert (root / "imagesTr" / "BRATS_002.nii.gz").is_file()
    marker = json.loads((root / ".data_fetch.json").read_text())
    assert marker["files"][server.url("Task99_Tiny.tar")]["md5"] == hashlib.md5(data).hexdigest()


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    data = make_msd_tar(tmp_path)
    registry = msd_entry(server, data)
    downloads = tmp_path / "data" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "Task99_Tiny.tar.part").write_bytes(data[:1000])
    data_fetch.fetch("tiny-msd", dest=tmp_path / "data", timeout=5, progress=False, registry=registry)
    assert server.requests_for("Task99_Tiny.tar") == [("Task99_Tiny.tar", "bytes=1000-")]


def test_complete_part_file_gets_416_and_is_verified(server, tmp_path):
    data = make_msd_tar(tmp_path)
    registry = msd_entry(server, data)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "Task99_Tiny.tar.part").write_bytes(data)     # crashed just before the rename
    root = data_fetch.fetch("tiny-msd", dest=tmp_path, timeout=5, progress=False, registry=registry)
    assert server.requests_for("Task99_Tiny.tar") == [("Task99_Tiny.tar", f"bytes={len(data)}-")]
    assert (root / "dataset.json").is_file()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = make_msd_tar(tmp_path)
    registry = msd_entry(server, data)
    server.ignore_range.add("Task99_Tiny.tar")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "Task99_Tiny.tar.part").write_bytes(b"stale bytes that must be overwritten")
    root = data_fetch.fetch("tiny-msd", dest=tmp_path, timeout=5, progress=False, registry=registry)
    assert (root / "imagesTr" / "BRATS_001.nii.gz").is_file()   # md5 matched: no stale prefix


def test_corrupted_download_is_refused_and_leaves_nothing(server, tmp_path):
    data = make_msd_tar(tmp_path)
    registry = msd_entry(server, data)
    server.wrong_bytes.add("Task99_Tiny.tar")
    expected = hashlib.md5(data).hexdigest()
    got = hashlib.md5(bytes(b ^ 0xFF for b in data)).hexdigest()
    dest = tmp_path / "data"
    with pytest.raises(data_fetch.ChecksumMismatchError, match=f"expected {expected}, got {got}"):
        data_fetch.fetch("tiny-msd", dest=dest, timeout=5, progress=False, registry=registry)
    assert leftovers(dest) == []
    assert not (dest / "Task99_Tiny").exists()


def test_archive_with_path_traversal_is_refused(server, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Task99_Tiny/../../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    registry = msd_entry(server, buffer.getvalue())
    dest = tmp_path / "a" / "data"
    with pytest.raises(data_fetch.UnsafeArchiveError, match=r"'\.\.'"):
        data_fetch.fetch("tiny-msd", dest=dest, timeout=5, progress=False, registry=registry)
    assert not list(tmp_path.rglob("evil.txt"))
    assert leftovers(dest) == []
    assert not (dest / "Task99_Tiny").exists()


def test_server_that_does_not_answer_gives_a_timeout_message(server, tmp_path):
    registry = msd_entry(server, make_msd_tar(tmp_path))
    server.hang.add("Task99_Tiny.tar")
    dest = tmp_path / "data"
    with pytest.raises(data_fetch.NetworkError, match=r"no answer within 0\.5 s") as info:
        data_fetch.fetch("tiny-msd", dest=dest, timeout=0.5, progress=False, registry=registry)
    assert server.url("Task99_Tiny.tar") in str(info.value)
    assert len(server.requests_for("Task99_Tiny.tar")) == 1   # no retry when nothing arrived
    assert leftovers(dest) == []


def test_unreachable_server_names_url_and_hint(tmp_path):
    with socket.socket() as probe:            # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.tar"
    entry = DatasetEntry(name="gone", title="", layout="msd", folder="X",
                         files=(Source(url=url, filename="x.tar", size_bytes=10, checksum="0" * 32,
                                       algorithm="md5", checksum_source="test"),),
                         licence="", citation="", homepage="", needs_gpu="")
    with pytest.raises(data_fetch.NetworkError, match=r"could not download .*x\.tar.*internet"):
        data_fetch.fetch("gone", dest=tmp_path, timeout=2, progress=False, registry={"gone": entry})


def test_full_disk_is_detected_before_downloading(server, tmp_path, monkeypatch):
    data = make_msd_tar(tmp_path)
    registry = msd_entry(server, data)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(download_module.shutil, "disk_usage", lambda folder: usage(100, 90, 10))
    dest = tmp_path / "data"
    with pytest.raises(data_fetch.NotEnoughSpaceError,
                       match=rf"free disk space in {re.escape(str(dest))}.*\({2 * len(data)} bytes\)"):
        data_fetch.fetch("tiny-msd", dest=dest, timeout=5, progress=False, registry=registry)
    assert server.requests == []


def test_disk_full_while_writing_names_folder_and_bytes(server, tmp_path, monkeypatch):
    data = make_msd_tar(tmp_path)
    registry = msd_entry(server, data)

    class FullDiskFile(io.BytesIO):
        def write(self, chunk):
            raise OSError(28, "No space left on device")   # errno.ENOSPC

    monkeypatch.setattr(download_module, "open", lambda path, mode: FullDiskFile(), raising=False)
    dest = tmp_path / "data"
    with pytest.raises(data_fetch.NotEnoughSpaceError,
                       match=rf"{re.escape(str(dest / 'downloads'))} is full.*\({len(data)} bytes\)"):
        data_fetch.fetch("tiny-msd", dest=dest, timeout=5, progress=False, registry=registry)
    assert not (dest / "Task99_Tiny").exists()


def test_isic_zips_become_images_masks_metadata(server, tmp_path):
    images, masks = make_isic_zips()
    registry = isic_entry(server, images, masks)
    root = data_fetch.fetch("tiny-isic", dest=tmp_path, timeout=5, progress=False, registry=registry)
    assert sorted(p.name for p in (root / "images").iterdir()) == ["ISIC_0000000.jpg",
                                                                   "ISIC_0000001.jpg"]
    assert sorted(p.name for p in (root / "masks").iterdir()) == [
        "ISIC_0000000_segmentation.png", "ISIC_0000001_segmentation.png"]
    metadata = pd.read_csv(root / "metadata.csv", dtype={"case_id": str, "patient_id": str})
    assert list(metadata.columns) == ["case_id", "patient_id", "site", "fitzpatrick"]
    assert (metadata["patient_id"] == metadata["case_id"]).all()
    assert metadata["fitzpatrick"].isna().all()
    mask = np.asarray(Image.open(root / "masks" / "ISIC_0000001_segmentation.png"))
    assert mask.shape == (10, 12) and mask.sum() == 255 * 4 * 5
    io_module = pytest.importorskip("medseg_edu.data.io")
    if hasattr(io_module, "list_skin_cases"):
        cases = io_module.list_skin_cases(root)
        assert cases["case_id"].tolist() == ["ISIC_0000000", "ISIC_0000001"]
        assert cases["mask_path"].notna().all()


def test_lock_file_records_first_hash_and_guards_later_downloads(server, tmp_path):
    images, masks = make_isic_zips()
    registry = isic_entry(server, images, masks)
    root = data_fetch.fetch("tiny-isic", dest=tmp_path, timeout=5, progress=False, registry=registry)
    lock = json.loads((tmp_path / data_fetch.LOCK_NAME).read_text())
    assert lock[server.url("in.zip")]["sha256"] == hashlib.sha256(images).hexdigest()
    assert lock[server.url("gt.zip")]["sha256"] == hashlib.sha256(masks).hexdigest()

    # The same files again (after deleting the data set): accepted, lock unchanged.
    shutil.rmtree(root)
    data_fetch.fetch("tiny-isic", dest=tmp_path, timeout=5, progress=False, registry=registry)
    assert json.loads((tmp_path / data_fetch.LOCK_NAME).read_text()) == lock

    # The server now sends different images: refused against the locked hash.
    shutil.rmtree(root)
    new_images, _ = make_isic_zips(seed=1)
    server.files["in.zip"] = new_images
    with pytest.raises(data_fetch.ChecksumMismatchError,
                       match=f"expected {hashlib.sha256(images).hexdigest()}, "
                             f"got {hashlib.sha256(new_images).hexdigest()}"):
        data_fetch.fetch("tiny-isic", dest=tmp_path, timeout=5, progress=False, registry=registry)
    assert json.loads((tmp_path / data_fetch.LOCK_NAME).read_text()) == lock
    assert not (tmp_path / "downloads" / "in.zip").exists()
    assert not (tmp_path / "downloads" / "in.zip.part").exists()


def test_existing_folder_not_written_by_fetch_is_not_touched(server, tmp_path):
    registry = msd_entry(server, make_msd_tar(tmp_path))
    mine = tmp_path / "Task99_Tiny"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own data")
    with pytest.raises(data_fetch.FetchError, match="not completed by data_fetch"):
        data_fetch.fetch("tiny-msd", dest=tmp_path, timeout=5, progress=False, registry=registry)
    assert (mine / "notes.txt").read_text() == "my own data"


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="name must be one of .*msd-brain.*got 'nope'"):
        data_fetch.fetch("nope")
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds, got 0"):
        data_fetch.fetch("msd-hippocampus", timeout=0)


def test_default_destination_follows_medseg_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_DATA", str(tmp_path))
    assert data_fetch.default_dest() == tmp_path / "datasets"


# --- the registry and the command line ------------------------------------------------------------
def test_registry_entries_are_complete():
    assert {"msd-brain", "msd-hippocampus", "isic2018"} <= set(REGISTRY)
    for entry in REGISTRY.values():
        assert entry.licence and entry.citation and entry.homepage and entry.needs_gpu
        assert entry.layout in {"msd", "isic"}
        for source in entry.files:
            assert source.url.startswith("https://") and source.url.endswith(source.filename)
            assert source.size_bytes > 0 and source.checksum_source
            if source.checksum is not None:
                length = {"md5": 32, "sha256": 64}[source.algorithm]
                assert re.fullmatch(f"[0-9a-f]{{{length}}}", source.checksum)


def test_msd_urls_and_md5s_agree_with_monai():
    """MONAI's DecathlonDataset publishes these (monai/apps/datasets.py, read as text: importing
    monai takes seconds)."""
    spec = importlib.util.find_spec("monai")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("monai is not installed")
    source_text = (Path(list(spec.submodule_search_locations)[0]) / "apps" / "datasets.py").read_text()
    for name, task in (("msd-brain", "Task01_BrainTumour"), ("msd-hippocampus", "Task04_Hippocampus")):
        source = REGISTRY[name].files[0]
        assert f'"{task}": "{source.checksum}"' in source_text
        assert f'"{task}": "{source.url}"' in source_text


def test_cli_list_prints_sizes_and_licences(capsys):
    assert data_fetch.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("msd-brain", "msd-hippocampus", "isic2018"):
        assert name in out
    assert "CC-BY-SA 4.0" in out and "CC-BY-NC 4.0" in out and "GB" in out


def test_cli_errors_are_one_line_and_non_zero(capsys):
    assert data_fetch.main([]) == 2
    assert data_fetch.main(["nope"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("data_fetch: error:") for line in err)
    assert data_fetch.main(["msd-brain", "--timeout", "-1"]) == 2


def test_cli_fetches_into_dest_and_reports_timeout(server, tmp_path, monkeypatch, capsys):
    for name, entry in msd_entry(server, make_msd_tar(tmp_path)).items():
        monkeypatch.setitem(REGISTRY, name, entry)
    assert data_fetch.main(["tiny-msd", "--dest", str(tmp_path / "d"), "--timeout", "5"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "d" / "Task99_Tiny")
    server.hang.add("Task99_Tiny.tar")
    assert data_fetch.main(["tiny-msd", "--dest", str(tmp_path / "e"), "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no answer within 0.5 s" in err[0]
