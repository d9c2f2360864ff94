"""Directory links in a folder data set are followed, but no real directory is walked twice: a loop ends,
no file is listed twice or under two classes, and what was skipped is named in ``ignored``."""

import os

import pytest

from convlab.cli import main
from convlab.data.folder import image_files, scan_folder

from .test_folder import write_classes

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


def linked_classes(root):
    """cat/ holds a link to its parent (a loop) and a link to its sibling dog/; owl/ links to a folder
    outside the data set, which is followed."""
    write_classes(root / "data", per_class=3)
    write_classes(root / "elsewhere", classes=("extra",), per_class=2)
    data = root / "data"
    (data / "cat" / "up").symlink_to("..", target_is_directory=True)
    (data / "cat" / "sibling").symlink_to(data / "dog", target_is_directory=True)
    (data / "owl" / "more").symlink_to(root / "elsewhere" / "extra", target_is_directory=True)
    (data / "owl" / "more2").symlink_to(root / "elsewhere" / "extra", target_is_directory=True)
    return data


def test_a_link_loop_ends_and_each_real_file_is_listed_once(tmp_path):
    data = linked_classes(tmp_path)
    scan = scan_folder(data)
    files = [path for path, _ in scan.layout["train"]]
    real = [os.path.realpath(path) for path in files]
    assert len(real) == len(set(real)) == 3 * 3 + 2
    labels = {
        os.path.relpath(os.path.realpath(path), tmp_path): scan.classes[label]
        for path, label in scan.layout["train"]
    }
    assert all(name.startswith(f"data/{labels[name]}/") or labels[name] == "owl" for name in labels)
    assert sum(labels[name] == "dog" for name in labels) == 3  # dog's files stay dog's, not cat's
    assert sum(name.startswith("elsewhere/") for name in labels) == 2  # the outside folder once
    assert {"cat/up/", "cat/sibling/", "owl/more2/"} <= set(scan.ignored)


def test_image_files_alone_walks_a_loop_once(tmp_path):
    data = linked_classes(tmp_path)
    ignored = []
    files = image_files(data / "cat", ignored)
    real = [os.path.realpath(path) for path in files]
    assert len(real) == len(set(real)) == 3 * 3 + 2  # cat, then dog via the link, then the rest via up/
    assert data / "cat" / "up" / "cat" in ignored  # the loop back into cat/ is skipped and named
    assert image_files(data / "dog") == sorted((data / "dog").iterdir())


def test_data_info_names_the_skipped_links(tmp_path, capsys):
    data = linked_classes(tmp_path)
    assert main(["data", "info", str(data)]) == 0
    out = capsys.readouterr().out
    assert "cat/up/" in out and "cat/sibling/" in out


def test_a_class_folder_that_links_to_another_class_is_refused(tmp_path):
    from PIL import Image

    from convlab.data import load_data
    from convlab.errors import ConvlabError

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "kitty").symlink_to(tmp_path / "cat", target_is_directory=True)
    with pytest.raises(ConvlabError, match="Class folders 'cat' and 'kitty' .* are the same folder"):
        load_data(str(tmp_path), image_size=(8, 8))
