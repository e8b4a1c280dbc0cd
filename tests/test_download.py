"""The real download/verify/convert path against a local HTTP server on 127.0.0.1.

The server hands out small archives in the real CIFAR python format (a tar.gz of
pickled dicts with ``b"data"`` uint8 (n, 3072) as R, G, B planes and a label list),
built here from images whose (N, C, H, W) layout the test fixes independently.
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import hashlib
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from infoopt.cli import main
from infoopt.data import DATASETS, DataError, download, get_spec, load_prepared, prepare

SIDE = 32


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """(n, 3, 32, 32) -> (n, 3072): the red plane row by row, then green, then blue."""
    planes = [images[:, channel].reshape(len(images), SIDE * SIDE) for channel in range(3)]
    return np.concatenate(planes, axis=1)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3, SIDE, SIDE), dtype=np.uint8)


@pytest.fixture(scope="module")
def cifar10_archive() -> dict:
    rng = np.random.default_rng(10)
    train = [_images(rng, 3) for _ in range(5)]
    train_labels = [rng.integers(0, 10, size=3).tolist() for _ in range(5)]
    test, test_labels = _images(rng, 4), rng.integers(0, 10, size=4).tolist()
    members = {}
    for i, (images, labels) in enumerate(zip(train, train_labels, strict=True), start=1):
        batch = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": labels,
            b"data": _cifar_rows(images),
            b"filenames": [f"img{j}.png".encode() for j in range(len(labels))],
        }
        members[f"cifar-10-batches-py/data_batch_{i}"] = pickle.dumps(batch, protocol=2)
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": test_labels,
            b"data": _cifar_rows(test),
        },
        protocol=2,
    )
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"num_cases_per_batch": 3})
    return {
        "body": _tar_gz(members),
        "x_train": np.concatenate(train),
        "y_train": np.concatenate(train_labels),
        "x_test": test,
        "y_test": np.array(test_labels),
    }


@pytest.fixture(scope="module")
def cifar100_archive() -> dict:
    rng = np.random.default_rng(100)
    x_train, x_test = _images(rng, 6), _images(rng, 3)
    fine_train, fine_test = rng.integers(0, 100, size=6), rng.integers(0, 100, size=3)

    def batch(images: np.ndarray, fine: np.ndarray) -> bytes:
        coarse = (fine // 5).tolist()  # a different label set, which must not be read
        content = {b"data": _cifar_rows(images), b"fine_labels": fine.tolist()}
        return pickle.dumps({**content, b"coarse_labels": coarse}, protocol=2)

    body = _tar_gz(
        {
            "cifar-100-python/train": batch(x_train, fine_train),
            "cifar-100-python/test": batch(x_test, fine_test),
        }
    )
    return {"body": body, "x_train": x_train, "y_train": fine_train, "x_test": x_test}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.hits[self.path] += 1
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, sent = self.server.routes[self.path]
        self.send_response(200)
        # Announce the whole body even when sending less: a transfer cut off mid-way.
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:sent])

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep the test output free of access logs."""


class ArchiveServer:
    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.hits = collections.Counter()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve(self, path: str, body: bytes, sent: int | None = None) -> str:
        self.httpd.routes[path] = (body, len(body) if sent is None else sent)
        return self.url(path)

    def hits(self) -> int:
        return sum(self.httpd.hits.values())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def running_server():
    archive_server = ArchiveServer()
    yield archive_server
    archive_server.close()


@pytest.fixture
def server(running_server):
    """The module's server with no routes and a zero request count."""
    running_server.httpd.routes.clear()
    running_server.httpd.hits.clear()
    return running_server


def _assert_nothing_complete(raw_dir: Path, out: Path, archive_name: str) -> None:
    assert not out.exists()
    left = sorted(p.name for p in raw_dir.iterdir()) if raw_dir.exists() else []
    assert left == [], f"left behind: {left}"
    assert not (raw_dir / archive_name).exists()


def test_cifar10_end_to_end_pixel_exact_and_prepared_once(server, tmp_path, cifar10_archive):
    body = cifar10_archive["body"]
    url = server.serve("/mirror/c10.tar.gz", body)
    raw, out = tmp_path / "raw", tmp_path / "data" / "cifar10.npz"

    assert prepare("cifar10", raw, out, url=url, md5=_md5(body)) == out
    first_hits = server.hits()
    assert first_hits >= 1
    # Only the verified archive stays in raw_dir: no partial file, no extracted tree.
    assert [p.name for p in raw.iterdir()] == ["cifar-10-python.tar.gz"]
    assert (raw / "cifar-10-python.tar.gz").read_bytes() == body

    with np.load(out, allow_pickle=False) as npz:
        data = dict(npz)
    assert data["x_train"].dtype == np.uint8 and data["x_train"].shape == (15, 3, 32, 32)
    np.testing.assert_array_equal(data["x_train"], cifar10_archive["x_train"])
    np.testing.assert_array_equal(data["x_test"], cifar10_archive["x_test"])
    assert data["y_train"].dtype == np.int64
    np.testing.assert_array_equal(data["y_train"], cifar10_archive["y_train"])
    np.testing.assert_array_equal(data["y_test"], cifar10_archive["y_test"])
    assert int(data["num_classes"]) == 10
    scaled = cifar10_archive["x_train"].astype(np.float64) / 255.0
    assert data["mean"].dtype == np.float32
    np.testing.assert_allclose(data["mean"], scaled.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(data["std"], scaled.std(axis=(0, 2, 3)), rtol=1e-6)

    prepared = load_prepared(out)
    assert torch.equal(prepared.x_test, torch.from_numpy(cifar10_archive["x_test"]))
    assert (prepared.num_classes, prepared.in_channels, prepared.image_size) == (10, 3, 32)

    # A second prepare is a no-op: no request, the array file untouched.
    stamp = out.stat().st_mtime_ns
    prepare("cifar10", raw, out, url=url, md5=_md5(body))
    assert server.hits() == first_hits
    assert out.stat().st_mtime_ns == stamp
    # Without the array file it converts again from the kept archive, still offline.
    out.unlink()
    prepare("cifar10", raw, out, url=url, md5=_md5(body))
    assert server.hits() == first_hits
    with np.load(out, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["x_train"], cifar10_archive["x_train"])


def test_cifar100_uses_fine_labels(server, tmp_path, cifar100_archive):
    body = cifar100_archive["body"]
    url = server.serve("/c100.tar.gz", body)
    out = prepare("cifar100", tmp_path / "raw", tmp_path / "c100.npz", url=url, md5=_md5(body))
    with np.load(out, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["x_train"], cifar100_archive["x_train"])
        np.testing.assert_array_equal(npz["x_test"], cifar100_archive["x_test"])
        np.testing.assert_array_equal(npz["y_train"], cifar100_archive["y_train"])
        assert int(npz["num_classes"]) == 100


def test_download_alone_then_prepare_downloads_once(server, tmp_path, cifar10_archive):
    body = cifar10_archive["body"]
    url = server.serve("/c10.tar.gz", body)
    archive = download("cifar10", tmp_path / "raw", url=url, md5=_md5(body).upper())
    assert archive == tmp_path / "raw" / "cifar-10-python.tar.gz"
    hits = server.hits()
    prepare("cifar10", tmp_path / "raw", tmp_path / "c10.npz", url=url, md5=_md5(body))
    assert server.hits() == hits


def test_stale_archive_is_replaced(server, tmp_path, cifar10_archive):
    body = cifar10_archive["body"]
    url = server.serve("/c10.tar.gz", body)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "cifar-10-python.tar.gz").write_bytes(body[:100])
    download("cifar10", raw, url=url, md5=_md5(body))
    assert (raw / "cifar-10-python.tar.gz").read_bytes() == body


def test_wrong_md5_names_file_both_sums_and_url(server, tmp_path, cifar10_archive):
    body = cifar10_archive["body"]
    url = server.serve("/c10.tar.gz", body)
    raw, out = tmp_path / "raw", tmp_path / "c10.npz"
    expected = "0123456789abcdef0123456789abcdef"
    with pytest.raises(DataError) as caught:
        prepare("cifar10", raw, out, url=url, md5=expected)
    message = str(caught.value)
    assert "checksum mismatch" in message
    assert str(raw / "cifar-10-python.tar.gz") in message
    assert expected in message and _md5(body) in message and url in message
    _assert_nothing_complete(raw, out, "cifar-10-python.tar.gz")


def test_transfer_cut_off_is_caught_by_the_checksum(server, tmp_path, cifar10_archive):
    body = cifar10_archive["body"]
    url = server.serve("/c10.tar.gz", body, sent=len(body) // 2)
    raw, out = tmp_path / "raw", tmp_path / "c10.npz"
    with pytest.raises(DataError) as caught:
        prepare("cifar10", raw, out, url=url, md5=_md5(body))
    message = str(caught.value)
    assert "checksum mismatch" in message
    assert _md5(body) in message and _md5(body[: len(body) // 2]) in message
    assert "cifar-10-python.tar.gz" in message and url in message
    _assert_nothing_complete(raw, out, "cifar-10-python.tar.gz")


def test_truncated_archive_with_its_own_md5_is_removed(server, tmp_path, cifar10_archive):
    truncated = cifar10_archive["body"][: len(cifar10_archive["body"]) * 2 // 3]
    url = server.serve("/c10.tar.gz", truncated)
    raw, out = tmp_path / "raw", tmp_path / "c10.npz"
    with pytest.raises(DataError) as caught:
        prepare("cifar10", raw, out, url=url, md5=_md5(truncated))
    message = str(caught.value)
    assert "corrupt" in message and "archive was removed" in message
    assert str(raw / "cifar-10-python.tar.gz") in message
    assert _md5(truncated) in message and url in message
    _assert_nothing_complete(raw, out, "cifar-10-python.tar.gz")


def test_archive_of_another_dataset_is_rejected(server, tmp_path, cifar100_archive):
    body = cifar100_archive["body"]
    url = server.serve("/c10.tar.gz", body)
    raw, out = tmp_path / "raw", tmp_path / "c10.npz"
    with pytest.raises(DataError, match="cifar-10-batches-py/data_batch_1"):
        prepare("cifar10", raw, out, url=url, md5=_md5(body))
    _assert_nothing_complete(raw, out, "cifar-10-python.tar.gz")


def test_unreachable_url(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/c10.tar.gz"  # nothing listens there any more
    raw, out = tmp_path / "raw", tmp_path / "c10.npz"
    with pytest.raises(DataError) as caught:
        prepare("cifar10", raw, out, url=url)
    message = str(caught.value)
    assert "could not download" in message and url in message
    assert "cifar-10-python.tar.gz" in message
    _assert_nothing_complete(raw, out, "cifar-10-python.tar.gz")


def test_missing_file_on_server(server, tmp_path):
    url = server.url("/missing.tar.gz")
    raw, out = tmp_path / "raw", tmp_path / "c10.npz"
    with pytest.raises(DataError, match="could not download.*404"):
        prepare("cifar10", raw, out, url=url)
    _assert_nothing_complete(raw, out, "cifar-10-python.tar.gz")


def test_registry_defaults_and_bad_input(tmp_path):
    assert DATASETS["cifar10"].url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert DATASETS["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert DATASETS["cifar100"].url == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert DATASETS["cifar100"].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert DATASETS["digits"].url is None and DATASETS["digits"].md5 is None
    with pytest.raises(ValueError, match="unknown dataset 'no_such_set'; valid: cifar10, cifar100"):
        get_spec("no_such_set")
    with pytest.raises(ValueError, match="not 32 hexadecimal digits"):
        download("cifar10", tmp_path, md5="abc")
    with pytest.raises(ValueError, match="digits is bundled"):
        download("digits", tmp_path, url="http://127.0.0.1/x")
    assert download("digits", tmp_path / "raw") == tmp_path / "raw"
    assert not (tmp_path / "raw").exists()


def _run_command(argv: list[str]) -> int:
    return main(["prepare", *argv])


def test_prepare_command(server, tmp_path, cifar10_archive, capsys):
    body = cifar10_archive["body"]
    url = server.serve("/c10.tar.gz", body)
    out = tmp_path / "c10.npz"
    argv = ["cifar10", "--raw-dir", str(tmp_path / "raw"), "--out", str(out), "--url", url]
    assert _run_command([*argv, "--md5", _md5(body)]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: written" in printed and "15 train + 4 test images of 3x32x32" in printed
    assert _run_command([*argv, "--md5", _md5(body)]) == 0
    assert "already prepared" in capsys.readouterr().out

    out.unlink()
    (tmp_path / "raw" / "cifar-10-python.tar.gz").unlink()
    assert _run_command([*argv, "--md5", "f" * 32]) == 1
    error = capsys.readouterr().err.splitlines()[-1]  # after the download's progress bar
    assert error.startswith("infoopt prepare: error: ") and "checksum mismatch" in error


# The other downloadable sets, each in its real format: MNIST's gzipped IDX files (also
# Fashion-MNIST's and KMNIST's), SVHN's MATLAB files, STL-10's tar.gz of binary files.
def _idx(values: np.ndarray) -> bytes:
    """A gzipped IDX file of unsigned bytes: magic, big-endian sizes, values row-major."""
    header = struct.pack(">I", 0x800 + values.ndim) + struct.pack(f">{values.ndim}I", *values.shape)
    return gzip.compress(header + values.astype(np.uint8).tobytes())


def _split(rng, n: int, channels: int, side: int, classes: int = 10):
    images = rng.integers(0, 256, size=(n, channels, side, side), dtype=np.uint8)
    return images, rng.integers(0, classes, size=n).astype(np.int64)


def _serve_files(server, monkeypatch, name: str, files: dict[str, bytes]) -> str:
    """Serve ``files`` under a base URL, with the registry's md5s made theirs."""
    base = server.serve(f"/{name}/", b"").rstrip("/")
    for file_name, body in files.items():
        server.serve(f"/{name}/{file_name}", body)
    spec = DATASETS[name]
    assert [file_name for file_name, _ in spec.files] == list(files)
    md5s = tuple((file_name, _md5(body)) for file_name, body in files.items())
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(spec, files=md5s))
    return base + "/"


def _assert_prepared(out: Path, train, test) -> None:
    prepared = load_prepared(out)
    for split, (images, labels) in (("train", train), ("test", test)):
        x, y = prepared.split(split)
        assert torch.equal(x, torch.from_numpy(images)) and torch.equal(y, torch.from_numpy(labels))


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist"])
def test_idx_sets_end_to_end(name, server, tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    train, test = _split(rng, 5, 1, 28), _split(rng, 3, 1, 28)
    files = {}
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        files[f"{prefix}-images-idx3-ubyte.gz"] = _idx(images[:, 0])
        files[f"{prefix}-labels-idx1-ubyte.gz"] = _idx(labels)
    base = _serve_files(server, monkeypatch, name, files)
    out = tmp_path / f"{name}.npz"
    prepare(name, tmp_path / "raw", out, url=base)
    _assert_prepared(out, train, test)
    assert sorted(path.name for path in (tmp_path / "raw").iterdir()) == sorted(files)
    with pytest.raises(ValueError, match="4 files, each checked against its known md5"):
        download(name, tmp_path / "raw", md5="0" * 32)


def test_idx_file_of_the_wrong_kind_is_removed(server, tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    (_, labels), (test, test_labels) = _split(rng, 2, 1, 28), _split(rng, 2, 1, 28)
    files = {
        "train-images-idx3-ubyte.gz": _idx(labels),  # labels where the images belong
        "train-labels-idx1-ubyte.gz": _idx(labels),
        "t10k-images-idx3-ubyte.gz": _idx(test[:, 0]),
        "t10k-labels-idx1-ubyte.gz": _idx(test_labels),
    }
    base = _serve_files(server, monkeypatch, "mnist", files)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is not an IDX file of 3"):
        prepare("mnist", tmp_path / "raw", tmp_path / "m.npz", url=base)
    assert not list((tmp_path / "raw").iterdir())


def test_svhn_end_to_end(server, tmp_path, monkeypatch):
    from scipy.io import savemat

    rng = np.random.default_rng(9)
    train, test = _split(rng, 4, 3, 32), _split(rng, 3, 3, 32)
    train[1][0] = 0  # the digit 0, which SVHN labels 10
    files = {}
    for file_name, (images, labels) in (("train_32x32.mat", train), ("test_32x32.mat", test)):
        buffer = io.BytesIO()
        labels_1_to_10 = np.where(labels == 0, 10, labels).astype(np.uint8)[:, None]
        savemat(buffer, {"X": images.transpose(2, 3, 1, 0), "y": labels_1_to_10})
        files[file_name] = buffer.getvalue()
    base = _serve_files(server, monkeypatch, "svhn", files)
    out = tmp_path / "svhn.npz"
    prepare("svhn", tmp_path / "raw", out, url=base)
    _assert_prepared(out, train, test)


def test_stl10_end_to_end(server, tmp_path):
    rng = np.random.default_rng(11)
    train, test = _split(rng, 3, 3, 96), _split(rng, 2, 3, 96)
    members = {"stl10_binary/class_names.txt": b"airplane\n"}
    for split, (images, labels) in (("train", train), ("test", test)):
        # Each channel's plane column by column; labels 1..10.
        members[f"stl10_binary/{split}_X.bin"] = images.transpose(0, 1, 3, 2).tobytes()
        members[f"stl10_binary/{split}_y.bin"] = (labels + 1).astype(np.uint8).tobytes()
    body = _tar_gz(members)
    url = server.serve("/stl10_binary.tar.gz", body)
    out = tmp_path / "stl10.npz"
    prepare("stl10", tmp_path / "raw", out, url=url, md5=_md5(body))
    _assert_prepared(out, train, test)


def test_known_sets_name_their_official_sources():
    urls = {name: spec.file_urls() for name, spec in DATASETS.items()}
    assert (
        urls["mnist"][0]
        == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    )
    assert urls["svhn"] == [
        "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
        "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
    ]
    assert urls["stl10"] == ["http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"]
    assert len(urls["kmnist"]) == len(urls["fashion_mnist"]) == 4
    assert urls["digits"] == []


def test_image_folder_archive_from_a_url(server, tmp_path, monkeypatch):
    import zipfile

    from PIL import Image

    from infoopt.data.registry import image_folder_spec

    rng, buffer, expected = np.random.default_rng(12), io.BytesIO(), {}
    with zipfile.ZipFile(buffer, "w") as archive:
        for split in ("train", "test"):
            images = rng.integers(0, 256, size=(2, 5, 5, 3), dtype=np.uint8)
            for name, pixels in zip(("ant", "bee"), images, strict=True):
                png = io.BytesIO()
                Image.fromarray(pixels).save(png, format="PNG")
                archive.writestr(f"insects/{split}/{name}/x.png", png.getvalue())
            expected[split] = (images.transpose(0, 3, 1, 2), np.array([0, 1]))
    body = buffer.getvalue()
    url = server.serve("/insects.zip", body)
    settings = {"url": url, "md5": _md5(body), "classes": ["ant", "bee"], "image_size": 5}
    monkeypatch.setitem(DATASETS, "insects", image_folder_spec("insects", settings))
    out = tmp_path / "insects.npz"
    prepare("insects", tmp_path / "raw", out)
    _assert_prepared(out, expected["train"], expected["test"])
    assert (tmp_path / "raw" / "insects.zip").is_file()
