"""The package's one atomic-write helper: whole files and folders or nothing, ordinary permissions."""
import os
import stat

import pytest

from d3dp_ktp.atomic import atomic_dir, atomic_file, old_dir, recover_dir, write_bytes, write_text


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def test_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "report.md"
    assert write_text(path, "first") == path
    write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["report.md"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "poses.npz"
    write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["poses.npz"]


def test_the_temporary_keeps_the_suffix_and_lies_next_to_the_target(tmp_path):
    with atomic_file(tmp_path / "anim.mp4") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".anim.")
        assert tmp.is_file() and tmp.stat().st_size == 0
        tmp.write_bytes(b"x")
    assert (tmp_path / "anim.mp4").read_bytes() == b"x"


def test_files_and_folders_get_the_permissions_of_a_plain_open_and_mkdir(tmp_path, umask_027):
    write_text(tmp_path / "a.json", "{}")
    with atomic_dir(tmp_path / "ckpt", marker="config.yaml") as tmp:
        (tmp / "config.yaml").write_text("model: {}")
    assert mode(tmp_path / "a.json") == 0o640
    assert mode(tmp_path / "ckpt") == 0o750
    assert os.umask(0o027) == 0o027  # and the umask itself was left as it was


def test_atomic_dir_swaps_the_folder_or_keeps_the_old_one(tmp_path):
    path = tmp_path / "last"
    for text in ("v1", "v2"):
        with atomic_dir(path, marker="config.yaml") as tmp:
            (tmp / "config.yaml").write_text(text)
    assert (path / "config.yaml").read_text() == "v2"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(path, marker="config.yaml") as tmp:
            (tmp / "config.yaml").write_text("v3")
            raise KeyboardInterrupt
    assert (path / "config.yaml").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["last"]


def test_a_swap_killed_between_its_renames_is_undone(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    (path / "trainer_state.json").write_text("{}")
    os.replace(path, old_dir(path))  # killed after moving the old folder aside, before the new one came in
    recover_dir(path, marker="trainer_state.json")
    assert (path / "trainer_state.json").is_file() and not old_dir(path).exists()
    recover_dir(tmp_path / "never_written", marker="trainer_state.json")  # nothing to undo: no-op
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
