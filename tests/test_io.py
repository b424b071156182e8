"""Atomic writes: permissions like a plain open(), stale temporary files, one-line write errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from beir_peft import io as beir_io
from beir_peft.errors import BeirPeftError
from beir_peft.io import atomic_directory, save_safetensors_atomic, write_json_atomic, write_text_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002], ids=oct)
def test_every_atomic_write_gets_the_mode_of_a_plain_open(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")
    os.mkdir(tmp_path / "plain-dir")
    write_text_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    save_safetensors_atomic({"w": torch.zeros(2)}, tmp_path / "weights.safetensors")
    with atomic_directory(tmp_path / "folder") as folder:
        (folder / "inside.txt").write_text("x", encoding="utf-8")
    expected = _mode(plain)
    for name in ("a.txt", "a.json", "weights.safetensors", "folder/inside.txt"):
        assert _mode(tmp_path / name) == expected, name
    assert _mode(tmp_path / "folder") == _mode(tmp_path / "plain-dir")


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_stale_temporaries_of_a_target_are_removed(tmp_path):
    from beir_peft.io import remove_stale_temps

    target = tmp_path / "result.json"
    dead = _dead_pid()
    stale = [
        tmp_path / ".result.json.ab3k_9zq.tmp",  # tempfile's name (older versions)
        tmp_path / f".result.json.{dead}@{beir_io._HOST}.00ff00ff.tmp",
    ]
    stale_folder = tmp_path / f".result.json.{dead}@{beir_io._HOST}.11ee11ee.tmp"
    kept = [
        tmp_path / f".result.json.{os.getppid()}@{beir_io._HOST}.00ff00ff.tmp",  # still running
        tmp_path / f".result.json.{dead}@elsewhere.00ff00ff.tmp",  # another host: cannot tell
        tmp_path / f".result.json.gz.{dead}@{beir_io._HOST}.00ff00ff.tmp",  # another target's
        tmp_path / ".other.json.ab3k_9zq.tmp",
    ]
    for path in stale + kept:
        path.write_text("partial", encoding="utf-8")
    stale_folder.mkdir()
    (stale_folder / "half.bin").write_bytes(b"0")
    write_json_atomic(target, {"ok": True})
    assert [p for p in [*stale, stale_folder] if p.exists()] == []
    assert all(p.exists() for p in kept)
    assert remove_stale_temps(target) == []


def test_a_temporary_being_written_by_this_process_is_not_stale(tmp_path):
    from beir_peft.io import remove_stale_temps

    target = tmp_path / "run.trec"
    with beir_io.atomic_open(target) as handle:
        handle.write("half")
        remove_stale_temps(target)  # e.g. another thread writing the same name
        handle.write(" and the rest\n")
    assert target.read_text(encoding="utf-8") == "half and the rest\n"


def test_a_failed_write_names_the_final_path_and_leaves_nothing(tmp_path, monkeypatch):
    from beir_peft.errors import OutputError

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(src), None, str(dst))

    monkeypatch.setattr(beir_io.os, "replace", refuse)
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'a.json'}: Permission denied$") as info:
        write_json_atomic(tmp_path / "a.json", {})
    assert isinstance(info.value, BeirPeftError) and isinstance(info.value, OSError)
    assert list(tmp_path.iterdir()) == []


def test_a_write_under_a_file_says_so(tmp_path):
    from beir_peft.errors import OutputError

    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match="a-file is a file, not a folder"):
        save_safetensors_atomic({"w": torch.zeros(1)}, tmp_path / "a-file" / "weights.safetensors")
    with pytest.raises(OutputError, match="a-file is a file, not a folder"):
        with atomic_directory(tmp_path / "a-file" / "deeper" / "folder"):
            pass


def test_check_output_path(tmp_path, monkeypatch):
    from beir_peft.errors import OutputError
    from beir_peft.io import check_output_path

    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    (tmp_path / "a-folder").mkdir()
    assert (
        check_output_path(tmp_path / "new" / "deeper" / "out.json")
        == tmp_path / "new" / "deeper" / "out.json"
    )
    assert not (tmp_path / "new").exists()  # checking creates nothing
    check_output_path(tmp_path / "a-file")  # an existing file is replaced
    check_output_path(tmp_path / "a-folder", folder=True)
    cases = [
        ((tmp_path / "a-file", True), "--output .*a-file: exists and is not a folder"),
        ((tmp_path / "a-folder", False), "--output .*a-folder: is a folder"),
        ((tmp_path / "a-file" / "x" / "y", False), "a-file is a file, not a folder"),
        ((tmp_path / "a-file" / "x", True), "a-file is a file, not a folder"),
    ]
    for (path, folder), message in cases:
        with pytest.raises(OutputError, match=message):
            check_output_path(path, folder=folder, what="--output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder"]  # the probes left nothing


def test_check_output_path_when_the_folder_cannot_be_written(tmp_path, monkeypatch):
    import errno

    from beir_peft.errors import OutputError
    from beir_peft.io import check_output_path

    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode, **kw: str(path) != str(tmp_path) and real_access(path, mode)
    )
    with pytest.raises(OutputError, match=f"no permission to write in {tmp_path}$"):
        check_output_path(tmp_path / "out.json", what="--output")
    # a folder that holds an index may be read only: reused, not written
    (tmp_path / "index").mkdir()
    monkeypatch.setattr(os, "access", real_access)

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(beir_io, "_create_temp_file", read_only)
    with pytest.raises(OutputError, match=r"cannot write in .*index \(Read-only file system\)$"):
        check_output_path(tmp_path / "index", folder=True, what="--index-dir")
    assert check_output_path(tmp_path / "index", folder=True, writable=False) == tmp_path / "index"
