"""Corrupted PNGs that kill a process through torchvision's PNG decoder (SIGSEGV) are one clean error in convlab.

The files in tests/data/untrusted/ are PNGs with a few bytes changed; each crashes
``torchvision.io.decode_image`` outright. Every check runs in a child process, so a crash fails the test
instead of killing the test runner: the readers, then the three commands a user meets them through (train
skips and lists them, predict says one sentence for each, serve answers 400 and goes on serving). A corrupt
file whose name is not UTF-8 is skipped and listed like the others.
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.helpers import serving
from tests.photos import write_photo_folder

CRASHERS = sorted((Path(__file__).parent / "untrusted").glob("*.png"))
NOT_UTF8 = b"bad\xff.png"  # a name from a system whose file names are Latin-1, say


def run_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


def test_the_regression_files_still_crash_torchvisions_png_decoder():
    # If a torchvision update stops crashing on them, the files still test convlab's path; this says why they are here.
    crash = run_child(f"""
        import torch, warnings
        from torchvision.io import decode_image
        warnings.filterwarnings("ignore")
        decode_image(torch.frombuffer(bytearray(open({str(CRASHERS[0])!r}, "rb").read()), dtype=torch.uint8))
    """)
    assert len(CRASHERS) == 6
    assert crash.returncode != 0


def test_every_reader_gives_a_clean_error_and_the_process_lives(tmp_path):
    folder = tmp_path / "photos"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
    from PIL import Image

    for i in range(6):
        Image.new("RGB", (16, 16), (30 * i, 90, 0)).save(folder / "cat" / f"good-{i}.png")
        Image.new("RGB", (16, 16), (0, 90, 30 * i)).save(folder / "dog" / f"good-{i}.png")
    for i, crasher in enumerate(CRASHERS):
        shutil.copy(crasher, folder / "dog" / f"bad-{i}.png")
    shutil.copy(CRASHERS[0], tmp_path / "disguised.jpg")  # a PNG named .jpg: the bytes decide the decoder
    child = run_child(f"""
        from pathlib import Path
        from convlab.data import load_data
        from convlab.data.images import UnreadableImageError, decode_image_file
        from convlab.serve.limits import decode_upload
        errors = 0
        for path in sorted(Path({str(folder / "dog")!r}).glob("bad-*.png")) + [Path({str(tmp_path / "disguised.jpg")!r})]:
            try:
                decode_image_file(path)
            except UnreadableImageError as error:
                errors += 1
            try:
                decode_upload(path.read_bytes(), "upload.png", in_chans=3, image_size=(16, 16), max_pixels=10**6)
            except Exception as error:
                assert type(error).__name__ == "UploadRejected", type(error)
        bundle = load_data({str(folder)!r}, image_size=(16, 16), val_split=0, max_bad_fraction=0.5)
        print(errors, len(bundle.skipped), bundle.size("train"))
    """)
    assert child.returncode == 0, child.stderr[-2000:]
    errors, skipped, train = map(int, child.stdout.split())
    assert skipped == len(CRASHERS) and train == 12  # the bad files are listed, the good ones train
    assert errors >= 1  # each one decodes (a few changed bytes may leave it readable) or is one clean error


def convlab_command(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """``convlab ARGUMENTS`` as a user runs it, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "convlab.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "CONVLAB_NUM_WORKERS": "0"},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`convlab train` on a photo folder holding the crashing PNGs and a corrupt file with a non-UTF-8 name:
    (the command's result, the run folder, the folder)."""
    work = tmp_path_factory.mktemp("untrusted-run")
    folder = write_photo_folder(work / "photos", per_class=45)  # 135 good files: 7 bad ones stay under 5%
    for crasher in CRASHERS:
        shutil.copy(crasher, folder / "dots" / crasher.name)
    with open(os.fsencode(folder / "plain") + b"/" + NOT_UTF8, "wb") as handle:
        handle.write(CRASHERS[0].read_bytes()[:100])
    command = "train --model mlp --data photos --epochs 1 --out run --device cpu"
    result = convlab_command(*command.split(), cwd=work)
    return result, work / "run", folder


def test_train_skips_and_lists_every_crashing_file_and_the_run_completes(trained):
    result, run, folder = trained
    assert result.returncode == 0, result.stderr[-3000:]
    listed = dict(line.split("\t") for line in (run / "skipped.txt").read_text().splitlines())
    assert set(listed) == {f"photos/dots/{crasher.name}" for crasher in CRASHERS} | {
        "photos/plain/bad\\xff.png"
    }
    assert all(reason and "\n" not in reason for reason in listed.values())
    assert (run / "best.safetensors").is_file() and "Traceback" not in result.stderr


def test_predict_says_one_sentence_per_crashing_file_and_predicts_the_rest(trained):
    _, run, folder = trained
    good = folder / "dots" / "dots-000.png"
    shutil.copy(good, os.fsencode(folder.parent) + b"/good\xff.png")
    images = [str(good), *map(str, CRASHERS), os.fsdecode(os.fsencode(folder.parent) + b"/good\xff.png")]
    result = convlab_command("predict", str(run), *images, "--topk", "1", cwd=folder.parent)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = result.stderr.splitlines()
    assert len(errors) == len(CRASHERS)
    for line, crasher in zip(errors, CRASHERS, strict=True):
        assert re.fullmatch(
            rf"convlab: error: Cannot read image '{re.escape(str(crasher))}': [^\n]+\.", line
        ), line
    # the precision --amp auto chose (a paragraph wrapped to the terminal), a blank line, then the files
    precision, files = result.stdout.split("\n\n", 1)
    assert precision.startswith("precision: ")
    first = files.splitlines()[0]
    assert first == str(good) and "good\\xff.png" in result.stdout


def test_serve_answers_400_for_each_crashing_file_and_goes_on_serving(trained):
    _, run, folder = trained
    good = (folder / "dots" / "dots-000.png").read_bytes()
    with serving(str(run), "--port", "0", "--device", "cpu") as (process, lines):
        ready = lines.get(timeout=120)
        assert ready is not None, process.stderr.read()
        url = re.search(r"http://127\.0\.0\.1:\d+", ready)[0]
        for crasher in CRASHERS:
            upload = {"file": (crasher.name, crasher.read_bytes(), "image/png")}
            answer = httpx.post(url + "/predict", files=upload, timeout=60)
            assert answer.status_code == 400 and crasher.name in answer.json()["error"], answer.text
            assert (
                httpx.post(url + "/predict", content=good, headers={"content-type": "image/png"}).status_code
                == 200
            )
        assert process.poll() is None
