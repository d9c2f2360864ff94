"""The report names the images it shows by their file names, whatever bytes those names hold."""

import os
from pathlib import Path

from tests.photos import write_photo_folder


def test_a_report_lists_files_whose_names_are_not_utf8(tmp_path):
    import convlab

    folder = write_photo_folder(tmp_path / "photos", per_class=12)
    for path in sorted(folder.glob("*/*.png")):  # every name holds a byte that is not UTF-8
        os.rename(path, os.fsencode(path.with_name(path.stem)) + b"\xe9.png")
    # a validation split and an untrained network: mistakes are listed in the report, by name
    convlab.train(model="mlp", data=str(folder), epochs=1, lr=1e-6, seed=0, out=str(tmp_path / "run"))
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "\\xe9.png" in report
    assert Path(tmp_path / "run" / "mistakes.png").is_file()
