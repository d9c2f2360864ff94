"""Corrupted PNGs that kill a process through torchvision's PNG decoder (SIGSEGV) are one clean error in convlab.

The files in tests/data/untrusted/ are PNGs with a few bytes changed; each crashes
``torchvision.io.decode_image`` outright. Every check runs in a child process, so a crash fails the test
instead of killing the test runner.
"""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

CRASHERS = sorted((Path(__file__).parent / "untrusted").glob("*.png"))


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
