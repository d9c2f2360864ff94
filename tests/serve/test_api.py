"""The JSON API over real HTTP: predictions equal `convlab.predict`'s, and bad requests get 4xx JSON errors."""

from __future__ import annotations

import base64
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

import convlab.checkpoint
from convlab.data.registry import FASHION_MNIST_CLASSES
from convlab.prediction import predict
from convlab.serve.limits import accepted_types

FASHION_CLASSES = list(FASHION_MNIST_CLASSES)
LENET5_PARAMETERS = 61_706  # convlab's lenet5 docstring: full C3, parameter-free pooling


def upload(path):
    return {"file": (path.name, path.read_bytes(), "image/png")}


def assert_still_serving(client, path):
    """After a refused request the same server still answers a good one."""
    assert client.get("/health").json() == {"status": "ok"}
    assert client.post("/predict", files=upload(path)).status_code == 200


def assert_error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for word in words:
        assert word in message
    return message


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` gray pixels and holds none: what a decompression bomb's
    header looks like to a decoder."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_one_image_gets_the_same_top5_as_convlab_predict(client, checkpoint, samples):
    paths, _ = samples
    answer = client.post("/predict", files=upload(paths[0])).json()
    (expected,) = predict(checkpoint, [paths[0]], topk=5, device="cpu")
    assert answer["model"] == "lenet5"
    assert answer["elapsed_ms"] > 0
    assert [p["label"] for p in answer["predictions"]] == [p["label"] for p in expected["predictions"]]
    assert [p["index"] for p in answer["predictions"]] == [p["index"] for p in expected["predictions"]]
    assert [p["probability"] for p in answer["predictions"]] == pytest.approx(
        [p["probability"] for p in expected["predictions"]], abs=1e-6
    )
    probabilities = [p["probability"] for p in answer["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6


def test_topk_is_capped_at_the_number_of_classes(client, samples):
    paths, _ = samples
    answer = client.post("/predict", params={"topk": 50}, files=upload(paths[0])).json()
    assert sorted(p["label"] for p in answer["predictions"]) == sorted(FASHION_CLASSES)
    assert sum(p["probability"] for p in answer["predictions"]) == pytest.approx(1.0, abs=1e-5)


def test_three_images_are_one_batch_answered_in_order(client, samples):
    paths, _ = samples
    files = [("files", (path.name, path.read_bytes(), "image/png")) for path in paths[:3]]
    answer = client.post("/predict", params={"topk": 3}, files=files).json()
    assert answer["model"] == "lenet5"
    assert [r["filename"] for r in answer["results"]] == [p.name for p in paths[:3]]
    for path, result in zip(paths, answer["results"]):
        alone = client.post("/predict", params={"topk": 3}, files=upload(path)).json()["predictions"]
        assert [p["label"] for p in result["predictions"]] == [p["label"] for p in alone]
        assert [p["probability"] for p in result["predictions"]] == pytest.approx(
            [p["probability"] for p in alone], abs=1e-5
        )


def test_the_trained_lenet_gets_most_of_sixteen_test_images_right(client, samples):
    paths, labels = samples
    files = [("file", (path.name, path.read_bytes(), "image/png")) for path in paths]
    results = client.post("/predict", params={"topk": 1}, files=files).json()["results"]
    top1 = [r["predictions"][0]["index"] for r in results]
    correct = sum(guess == label for guess, label in zip(top1, labels))
    assert correct >= 11  # 4 epochs on 1,800 images: about 75% on the test split


def test_raw_image_bytes_are_one_image(client, samples):
    paths, _ = samples
    by_form = client.post("/predict", files=upload(paths[1])).json()["predictions"]
    for media in ("image/png", "application/octet-stream"):
        raw = client.post("/predict", content=paths[1].read_bytes(), headers={"content-type": media})
        assert raw.status_code == 200
        assert raw.json()["predictions"] == by_form


def test_any_size_and_mode_is_converted_like_convlab_predict(client, checkpoint, tmp_path):
    # An RGB JPEG at 70 x 50: converted to 1 x 32 x 32 by luma and antialiased resizing, as the CLI does.
    pixels = np.zeros((50, 70, 3), dtype=np.uint8)
    pixels[5:45, 20:50] = (240, 200, 90)
    path = tmp_path / "rgb.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    served = client.post("/predict", files={"file": ("rgb.jpg", path.read_bytes(), "image/jpeg")}).json()
    (expected,) = predict(checkpoint, [path], device="cpu")
    assert [p["label"] for p in served["predictions"]] == [p["label"] for p in expected["predictions"]]


def test_model_card_describes_the_checkpoint(client, checkpoint):
    card = client.get("/model").json()
    record = convlab.checkpoint.read_record(checkpoint)
    assert card["name"] == "lenet5"
    assert card["options"] == record.model.options
    assert card["classes"] == FASHION_CLASSES
    assert card["input"]["channels"] == 1 and card["input"]["size"] == [32, 32]
    assert card["input"]["mean"] == pytest.approx(record.input.mean)
    assert card["parameters"] == LENET5_PARAMETERS
    assert card["metrics"]["val_top1"] == pytest.approx(record.metrics["val_top1"])
    assert card["metrics"]["val_top1"] > 0.6
    assert card["format"] == "checkpoint" and card["gradcam"] is True


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_gradcam_is_a_png_overlay_at_the_input_size(client, samples):
    paths, _ = samples
    top1 = client.post("/predict", files=upload(paths[0])).json()["predictions"][0]
    cam = client.post("/gradcam", files=upload(paths[0])).json()
    assert cam["image"].startswith("data:image/png;base64,")
    with Image.open(BytesIO(base64.b64decode(cam["image"].split(",", 1)[1]))) as picture:
        assert picture.format == "PNG" and picture.size == (32, 32) and picture.mode == "RGB"
    assert cam["predicted"]["label"] == top1["label"]
    assert cam["predicted"]["probability"] == pytest.approx(top1["probability"], abs=1e-5)
    assert cam["target"] == {"label": top1["label"], "index": top1["index"]}
    assert cam["layer"]  # the last layer with spatial maps, named as in the model
    chosen = client.post("/gradcam", params={"target": "Bag"}, files=upload(paths[0])).json()
    assert chosen["target"] == {"label": "Bag", "index": 8}
    assert_error(client.post("/gradcam", params={"target": "Hat"}, files=upload(paths[0])), 400, "Hat", "Bag")


def test_concurrent_predictions_and_gradcams_do_not_disturb_each_other(client, samples):
    paths, _ = samples
    expected = [client.post("/predict", files=upload(p)).json()["predictions"] for p in paths[:4]]

    def ask(i):
        path = paths[i % 4]
        if i % 3 == 0:
            return client.post("/gradcam", files=upload(path)).status_code == 200
        return same_answer(client.post("/predict", files=upload(path)).json()["predictions"], expected[i % 4])

    with ThreadPoolExecutor(6) as pool:
        assert all(pool.map(ask, range(18)))


def same_answer(found: list[dict], expected: list[dict]) -> bool:
    """The same classes in the same order, the same probabilities but for float rounding: a prediction
    batched with other clients' images runs through other kernel blockings than one alone."""
    return [(p["label"], p["index"]) for p in found] == [(p["label"], p["index"]) for p in expected] and all(
        abs(p["probability"] - q["probability"]) < 1e-5 for p, q in zip(found, expected)
    )


def test_concurrent_clients_are_batched_and_each_gets_its_own_answer(server, client, samples):
    paths, _ = samples
    alone = [client.post("/predict", files=upload(p)).json()["predictions"] for p in paths]
    batcher = server.server.config.app.state.batcher
    before = batcher.batches

    def ask(i):
        return same_answer(
            client.post("/predict", files=upload(paths[i % len(paths)])).json()["predictions"],
            alone[i % len(paths)],
        )

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(ask, range(48)))
    assert batcher.largest_batch > 1  # clients shared forward passes
    assert batcher.batches - before < 48


def test_an_upload_over_the_limit_gets_413(client, samples):
    paths, _ = samples
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)  # ~1.9 MB as PNG
    big = BytesIO()
    Image.fromarray(noise).save(big, format="PNG")
    assert len(big.getvalue()) > 1.5 * 2**20
    response = client.post("/predict", files={"file": ("noise.png", big.getvalue(), "image/png")})
    assert_error(response, 413, "1 MB", "--max-upload-mb")
    assert_still_serving(client, paths[0])

    def chunks():  # no Content-Length: the limit is counted as the body streams in
        data = big.getvalue()
        for start in range(0, len(data), 2**16):
            yield data[start : start + 2**16]

    chunked = client.post("/predict", content=chunks(), headers={"content-type": "image/png"})
    assert_error(chunked, 413, "1 MB")
    assert_still_serving(client, paths[0])


def test_an_image_with_too_many_pixels_gets_413_before_decoding(client, samples):
    paths, _ = samples
    large = BytesIO()
    Image.new("L", (700, 700)).save(large, format="PNG")  # 2 KB of file, 490,000 pixels
    response = client.post("/predict", files={"file": ("large.png", large.getvalue(), "image/png")})
    assert_error(response, 413, "large.png", "700 x 700 = 490,000", "360,000")
    bomb = client.post(
        "/predict", content=png_header_only(100_000, 100_000), headers={"content-type": "image/png"}
    )
    assert_error(bomb, 413, "request body", "10000000000 pixels")
    assert_still_serving(client, paths[0])


def test_a_text_file_gets_415_naming_the_accepted_types(client, samples):
    paths, _ = samples
    response = client.post("/predict", files={"file": ("notes.txt", b"not an image\n", "text/plain")})
    message = assert_error(response, 415, "notes.txt")
    assert all(media in message for media in accepted_types())
    assert "image/png" in message and "image/jpeg" in message
    raw = client.post("/predict", content=b"hello", headers={"content-type": "text/plain"})
    assert_error(raw, 415, "text/plain", "multipart/form-data", "image/png")
    disguised = client.post("/predict", content=b"hello", headers={"content-type": "image/png"})
    assert_error(disguised, 415, "request body")
    assert_still_serving(client, paths[0])


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_a_truncated_image_gets_400(client, samples, image_format):
    paths, _ = samples
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = BytesIO()
    Image.fromarray(noise).save(whole, format=image_format)
    cut = whole.getvalue()[: len(whole.getvalue()) // 2]
    name = f"cut.{image_format.lower()}"
    response = client.post("/predict", files={"file": (name, cut, f"image/{image_format.lower()}")})
    assert_error(response, 400, name, "truncated")
    assert "convlab-upload" not in response.json()["error"]  # the temporary file's name is not leaked
    assert_still_serving(client, paths[0])


def test_an_empty_file_gets_400(client, samples):
    paths, _ = samples
    assert_error(
        client.post("/predict", files={"file": ("empty.png", b"", "image/png")}), 400, "empty.png", "empty"
    )
    assert_still_serving(client, paths[0])


def test_malformed_requests_get_400_json(client, samples):
    paths, _ = samples
    image = paths[0].read_bytes()
    no_boundary = client.post("/predict", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert_error(no_boundary, 400, "boundary")
    broken = client.post(
        "/predict",
        content=b"garbage without any boundary line",
        headers={"content-type": "multipart/form-data; boundary=XYZ"},
    )
    assert broken.status_code == 400 and "error" in broken.json()
    cut_form = (
        b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + image[:100]
    )
    truncated = client.post(
        "/predict", content=cut_form, headers={"content-type": "multipart/form-data; boundary=XYZ"}
    )
    assert truncated.status_code == 400 and "error" in truncated.json()
    assert_error(
        client.post("/predict", files={"picture": ("a.png", image, "image/png")}), 400, "picture", "'file'"
    )
    text_part = b'--XYZ\r\nContent-Disposition: form-data; name="file"\r\n\r\na.png\r\n--XYZ--\r\n'
    text_form = client.post(
        "/predict", content=text_part, headers={"content-type": "multipart/form-data; boundary=XYZ"}
    )
    assert_error(text_form, 400, "text, not a file")
    empty_form = client.post(
        "/predict", content=b"--XYZ--\r\n", headers={"content-type": "multipart/form-data; boundary=XYZ"}
    )
    assert_error(empty_form, 400, "no image")
    assert_error(client.post("/predict"), 415, "'none'")
    for topk in ("0", "five"):
        assert_error(client.post("/predict", params={"topk": topk}, files=upload(paths[0])), 400, "topk")
    assert_error(client.get("/predict"), 405)
    assert_error(client.get("/no-such-page"), 404)
    assert_still_serving(client, paths[0])


def test_gradcam_explains_one_image_at_a_time(client, samples):
    paths, _ = samples
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths[:2]]
    assert client.post("/gradcam", files=files).status_code == 400
    assert_still_serving(client, paths[0])


def test_openapi_documents_both_answer_shapes_and_both_request_bodies(client):
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/predict"]["post"]
    answer = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in answer["anyOf"]} == {"PredictAnswer", "BatchAnswer"}
    assert {"results", "model", "elapsed_ms"} <= set(
        schema["components"]["schemas"]["BatchAnswer"]["properties"]
    )
    bodies = predict["requestBody"]["content"]
    assert set(bodies["multipart/form-data"]["schema"]["properties"]) == {"file", "files"}
    assert {"image/png", "image/jpeg", "application/octet-stream"} <= set(bodies)
    assert {"400", "413", "415"} <= set(predict["responses"])
    assert '"results"' in predict["description"] and '"predictions"' in predict["description"]
    assert client.get("/docs").status_code == 200


def test_the_page_loads_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("static/app.js", "static/style.css"):
        response = client.get("/" + asset)
        assert response.status_code == 200
        assert "http://" not in response.text and "https://" not in response.text


def test_an_animated_gif_is_classified_by_its_first_frame(client, samples, tmp_path):
    paths, _ = samples
    with Image.open(paths[0]) as first, Image.open(paths[5]) as second:
        frames = [first.convert("L"), second.convert("L")]
    animated = tmp_path / "two-frames.gif"
    frames[0].save(animated, save_all=True, append_images=frames[1:], duration=100)
    still = tmp_path / "first-frame.gif"
    frames[0].save(still)
    answer = client.post("/predict", files={"file": ("two-frames.gif", animated.read_bytes(), "image/gif")})
    alone = client.post("/predict", files={"file": ("first-frame.gif", still.read_bytes(), "image/gif")})
    assert answer.status_code == 200
    assert answer.json()["predictions"] == alone.json()["predictions"]
