"""Bundled digits, the device-resident loader and its augmentation, splits and subsets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torchvision.transforms.v2 import functional as TF

from infoopt.data import (
    Prepared,
    TrainLoader,
    eval_batches,
    eval_subset,
    holdout_split,
    load_prepared,
    prepare,
)
from infoopt.data.augment import RandomCropFlip
from infoopt.seeding import generator


@pytest.fixture(scope="module")
def digits_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    return prepare("digits", root / "raw", root / "digits.npz")


def _load(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return dict(npz)


def _rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(label, pixels...) rows in lexicographic order: a multiset to compare."""
    rows = np.concatenate([y[:, None], x.reshape(len(x), -1).astype(np.int64)], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_digits_split_sizes_content_and_stratification(digits_path):
    data = _load(digits_path)
    assert data["x_train"].shape == (1437, 1, 8, 8) and data["x_test"].shape == (360, 1, 8, 8)
    assert data["x_train"].dtype == np.uint8 and data["y_train"].dtype == np.int64
    assert int(data["num_classes"]) == 10

    bunch = load_digits()
    pixels = np.rint(bunch.images * 255.0 / 16.0)
    assert pixels.max() == 255
    together = _rows(
        np.concatenate([data["x_train"], data["x_test"]]),
        np.concatenate([data["y_train"], data["y_test"]]),
    )
    np.testing.assert_array_equal(together, _rows(pixels, bunch.target.astype(np.int64)))

    class_counts = np.bincount(bunch.target, minlength=10)
    test_counts = np.bincount(data["y_test"], minlength=10)
    share = 360 * class_counts / len(bunch.target)
    assert np.all(np.floor(share) <= test_counts) and np.all(test_counts <= np.ceil(share))

    scaled = data["x_train"].astype(np.float64) / 255.0
    np.testing.assert_allclose(data["mean"], [scaled.mean()], rtol=1e-6)
    np.testing.assert_allclose(data["std"], [scaled.std()], rtol=1e-6)


def test_digits_split_is_deterministic(digits_path, tmp_path):
    again = _load(prepare("digits", tmp_path / "raw", tmp_path / "again.npz"))
    for key, value in _load(digits_path).items():
        np.testing.assert_array_equal(again[key], value)


def test_load_prepared_and_normalize(digits_path):
    prepared = load_prepared(digits_path, "cpu")
    assert (prepared.num_classes, prepared.in_channels, prepared.image_size) == (10, 1, 8)
    assert prepared.x_train.dtype == torch.uint8 and prepared.y_test.dtype == torch.int64
    assert prepared.mean.dtype == torch.float32 and prepared.mean.shape == (1,)

    x = prepared.x_test[:7]
    mean = prepared.mean.double().numpy()[:, None, None]
    std = prepared.std.double().numpy()[:, None, None]
    expected = (x.numpy().astype(np.float64) / 255.0 - mean) / std
    out = prepared.normalize(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(prepared.normalize(x[0]).numpy(), expected[0], atol=1e-5)
    assert torch.equal(x, prepared.x_test[:7])  # the input is left alone
    with pytest.raises(TypeError, match="uint8"):
        prepared.normalize(x.float())


def _synthetic(n: int = 50, side: int = 6, channels: int = 3, labels=None) -> Prepared:
    """Random images; labels default to sample ids; mean 0, std 1 so x = 255·output."""
    rng = np.random.default_rng(n)
    x = torch.from_numpy(rng.integers(0, 256, size=(n, channels, side, side), dtype=np.uint8))
    y = torch.arange(n) if labels is None else torch.as_tensor(labels, dtype=torch.int64)
    return Prepared(
        x_train=x,
        y_train=y,
        x_test=x[:10].clone(),
        y_test=y[:10].clone(),
        mean=torch.zeros(channels),
        std=torch.ones(channels),
        num_classes=int(y.max()) + 1,
    )


def _pixels(images: torch.Tensor) -> np.ndarray:
    """Back from the mean-0, std-1 normalisation to uint8."""
    return torch.round(images * 255).to(torch.uint8).numpy()


def test_epoch_visits_each_sample_once():
    prepared = _synthetic(n=50)
    loader = TrainLoader(prepared, batch_size=8, seed=1, crop_padding=0, flip=False)
    assert loader.steps_per_epoch == 6
    batches = list(loader.epoch(0))
    ids = torch.cat([y for _, y in batches])
    assert len(batches) == 6 and all(len(y) == 8 for _, y in batches)
    assert len(set(ids.tolist())) == 48  # drop_last: two samples sit this epoch out
    for images, y in batches:  # without augmentation a batch is the samples themselves
        np.testing.assert_array_equal(_pixels(images), prepared.x_train[y].numpy())

    full = TrainLoader(prepared, batch_size=8, seed=1, crop_padding=0, flip=False, drop_last=False)
    assert full.steps_per_epoch == 7
    sizes = [len(y) for _, y in full.epoch(0)]
    ids = torch.cat([y for _, y in full.epoch(0)])
    assert sizes == [8] * 6 + [2] and sorted(ids.tolist()) == list(range(50))
    assert not torch.equal(ids, torch.cat([y for _, y in full.epoch(1)]))


def test_same_seed_same_batches_other_seed_other_order():
    prepared = _synthetic()

    def run(seed: int, epoch: int) -> list:
        return list(TrainLoader(prepared, batch_size=16, seed=seed).epoch(epoch))

    for (xa, ya), (xb, yb) in zip(run(5, 2), run(5, 2), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(run(5, 2)[0][1], run(6, 2)[0][1])


def test_resume_yields_the_tail_of_the_epoch():
    prepared = _synthetic(n=60)
    full = list(TrainLoader(prepared, batch_size=8, seed=3).epoch(4))
    assert len(full) == 7
    for start in (0, 1, 5, 7):
        tail = list(TrainLoader(prepared, batch_size=8, seed=3).epoch(4, start_step=start))
        assert len(tail) == len(full) - start
        for (xa, ya), (xb, yb) in zip(tail, full[start:], strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    loader = TrainLoader(prepared, batch_size=8, seed=3)
    with pytest.raises(ValueError, match="start_step 8 is outside 0..7"):
        loader.epoch(4, start_step=8)
    with pytest.raises(ValueError, match="exceeds the 60 training samples"):
        TrainLoader(prepared, batch_size=61, seed=3)


def test_crop_flip_matches_torchvision_per_sample():
    padding, side = 2, 5
    rng = np.random.default_rng(0)
    offsets = list(itertools.product(range(2 * padding + 1), range(2 * padding + 1), (0, 1)))
    images = torch.from_numpy(
        rng.integers(1, 256, size=(len(offsets), 3, side, side), dtype=np.uint8)
    )
    dy, dx, flips = (torch.tensor(column) for column in zip(*offsets, strict=True))
    padded = torch.from_numpy(
        np.pad(images.numpy(), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    )
    out = RandomCropFlip(side, side, padding, True, "cpu").apply(padded, dy, dx, flips)
    for image, result, (top, left, flip) in zip(images, out, offsets, strict=True):
        # RandomCrop(padding) at padded offset (top, left) = crop of the raw image at -padding.
        reference = TF.crop(image, top - padding, left - padding, side, side)
        if flip:
            reference = TF.horizontal_flip(reference)
        assert torch.equal(result, reference), (top, left, flip)


def _candidates(image: np.ndarray, padding: int, flip: bool) -> dict[tuple, np.ndarray]:
    """Every crop (and mirror) of ``image`` a loader may produce, by numpy slicing."""
    side = image.shape[-1]
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    found = {}
    for top, left in itertools.product(range(2 * padding + 1), repeat=2):
        crop = padded[:, top : top + side, left : left + side]
        found[(top, left, 0)] = crop
        if flip:
            found[(top, left, 1)] = crop[:, :, ::-1]
    return found


@pytest.mark.parametrize("padding,flip", [(2, True), (0, True), (3, False)])
def test_loader_augments_by_crop_and_flip_only(padding, flip):
    prepared = _synthetic(n=64, side=6)
    loader = TrainLoader(prepared, batch_size=16, seed=7, crop_padding=padding, flip=flip)
    seen = set()
    for epoch in range(2):
        for images, ids in loader.epoch(epoch):
            for result, sample in zip(_pixels(images), ids.tolist(), strict=True):
                options = _candidates(prepared.x_train[sample].numpy(), padding, flip)
                matches = [key for key, crop in options.items() if np.array_equal(result, crop)]
                assert matches, f"sample {sample} is no crop/flip of its image"
                seen.update(matches)
    flips_seen = {key[2] for key in seen}
    assert flips_seen == ({0, 1} if flip else {0})
    # 128 draws: every row offset and every column offset in 0..2·padding shows up.
    assert {key[0] for key in seen} == {key[1] for key in seen} == set(range(2 * padding + 1))


def test_batches_follow_the_documented_seed_streams():
    """Order from ("order", e), step k's crop offsets and flips from ("augment", e, k)."""
    prepared, seed, epoch, batch, padding = _synthetic(n=40, side=6), 9, 2, 8, 2
    order = torch.randperm(40, generator=generator("cpu", seed, "order", epoch))
    loader = TrainLoader(prepared, batch_size=batch, seed=seed, crop_padding=padding)
    for step, (images, ids) in enumerate(loader.epoch(epoch)):
        assert torch.equal(ids, order[step * batch : (step + 1) * batch])
        rng = generator("cpu", seed, "augment", epoch, step)
        dy, dx = torch.randint(0, 2 * padding + 1, (2, batch), generator=rng)
        flips = torch.randint(0, 2, (batch,), generator=rng)
        for i, sample in enumerate(ids.tolist()):
            options = _candidates(prepared.x_train[sample].numpy(), padding, True)
            key = (int(dy[i]), int(dx[i]), int(flips[i]))
            np.testing.assert_array_equal(_pixels(images[i]), options[key])


def test_eval_batches_in_order():
    prepared = _synthetic(n=30)
    batches = list(eval_batches(prepared, "train", batch_size=8))
    assert [len(y) for _, y in batches] == [8, 8, 8, 6]
    images = torch.cat([x for x, _ in batches])
    np.testing.assert_array_equal(_pixels(images), prepared.x_train.numpy())
    assert torch.equal(torch.cat([y for _, y in batches]), prepared.y_train)

    picked = [4, 0, 29, 4]
    batches = list(eval_batches(prepared, "train", batch_size=3, indices=picked))
    assert torch.cat([y for _, y in batches]).tolist() == picked
    with pytest.raises(ValueError, match="unknown split 'val'; valid: train, test"):
        eval_batches(prepared, "val", 8)
    with pytest.raises(ValueError, match=r"indices must lie in 0..29"):
        eval_batches(prepared, "train", 8, indices=[30])


def test_holdout_split_is_stratified_disjoint_and_seeded():
    class_sizes = [40, 25, 20, 15]
    labels = np.repeat(np.arange(4), class_sizes)
    prepared = _synthetic(n=100, labels=labels)
    # Pixel (0, 0, 0) carries the sample id, so each image can be traced.
    prepared.x_train[:, 0, 0, 0] = torch.arange(100, dtype=torch.uint8)

    split = holdout_split(prepared, fraction=0.2, seed=11)
    kept = split.x_train[:, 0, 0, 0].long()
    held = split.x_test[:, 0, 0, 0].long()
    assert len(held) == 20 and len(kept) == 80
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(100))
    assert torch.equal(split.y_train, torch.from_numpy(labels)[kept])
    assert torch.equal(split.y_test, torch.from_numpy(labels)[held])
    for cls, size in enumerate(class_sizes):
        count = int((split.y_test == cls).sum())
        assert np.floor(0.2 * size) <= count <= np.ceil(0.2 * size)
    assert torch.equal(split.mean, prepared.mean) and torch.equal(split.std, prepared.std)
    assert len(prepared.x_test) == 10  # the original is untouched

    again = holdout_split(prepared, fraction=0.2, seed=11)
    assert torch.equal(again.x_test, split.x_test)
    other = holdout_split(prepared, fraction=0.2, seed=12)
    assert not torch.equal(other.x_test, split.x_test)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        holdout_split(prepared, fraction=1.0, seed=0)


def test_eval_subset_is_fixed_by_its_seed():
    prepared = _synthetic(n=50)
    x, y = eval_subset(prepared, "train", size=12, seed=4)
    assert len(set(y.tolist())) == 12
    np.testing.assert_array_equal(_pixels(x), prepared.x_train[y].numpy())
    x_again, y_again = eval_subset(prepared, "train", size=12, seed=4)
    assert torch.equal(x, x_again) and torch.equal(y, y_again)
    assert not torch.equal(y, eval_subset(prepared, "train", size=12, seed=5)[1])
    _, everything = eval_subset(prepared, "test", size=2048, seed=4)
    assert torch.equal(everything, prepared.y_test)


# A user's image folder: train/<class>/* and test/<class>/*, as a directory, .zip or .tar.
CLASSES = ["cat", "dog", "eel"]


def _write_folder(root, rng, side: int, channels: int, per_class: int = 2) -> dict:
    """PNG and JPEG files under ``root``; returns the PNGs' pixels per split (N, C, H, W)."""
    from PIL import Image

    written = {}
    for split in ("train", "test"):
        images, labels = [], []
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                shape = (side, side) if channels == 1 else (side, side, 3)
                pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
                images.append(pixels[None] if channels == 1 else pixels.transpose(2, 0, 1))
                labels.append(label)
        written[split] = (np.stack(images), np.array(labels))
    return written


@pytest.fixture
def registry():
    """The dataset registry, restored after the test registers image folders in it."""
    from infoopt.data import DATASETS

    saved = dict(DATASETS)
    yield DATASETS
    DATASETS.clear()
    DATASETS.update(saved)


def _folder(path, channels: int = 3, side: int = 6) -> dict:
    return {"path": str(path), "classes": CLASSES, "image_size": side, "channels": channels}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("packing", ["directory", "zip", "tar"])
def test_image_folder_pixel_exact(channels, packing, tmp_path, registry):
    import shutil

    from infoopt.data.registry import register_image_folders

    written = _write_folder(tmp_path / "pets" / "pets", np.random.default_rng(3), 6, channels)
    path = tmp_path / "pets" / "pets"
    if packing != "directory":  # an archive holding one top-level directory
        path = shutil.make_archive(str(tmp_path / "pets"), packing, tmp_path / "pets")
    register_image_folders({"pets": _folder(path, channels)})
    out = prepare("pets", tmp_path / "raw", tmp_path / "pets.npz")
    prepared = load_prepared(out)
    assert prepared.num_classes == 3
    for split, (images, labels) in written.items():
        x, y = prepared.split(split)
        assert torch.equal(x, torch.from_numpy(images)) and y.tolist() == labels.tolist()


def test_image_folder_resizes_and_converts(tmp_path, registry):
    from PIL import Image

    from infoopt.data.registry import register_image_folders

    for split in ("train", "test"):
        for name, value in zip(CLASSES, (40, 120, 200), strict=True):
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (20, 12), (value,) * 3).save(tmp_path / split / name / "a.jpg")
    register_image_folders({"pets": _folder(tmp_path, channels=1, side=5)})
    prepared = load_prepared(prepare("pets", tmp_path / "raw", tmp_path / "p.npz"))
    x, y = prepared.split("train")
    assert x.shape == (3, 1, 5, 5)
    for image, value in zip(x, (40, 120, 200), strict=True):  # JPEG is lossy: close, flat
        assert (image.int() - value).abs().max() <= 2


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "train/dog/0.png").write_bytes(b"not a png"), "0.png is not an"),
        (lambda root: [p.unlink() for p in (root / "test/eel").iterdir()], "'eel' has no images"),
        (lambda root: (root / "test/fox").mkdir(), r"not configured: \['fox'\]"),
        (lambda root: __import__("shutil").rmtree(root / "train/cat"), r"missing: \['cat'\]"),
    ],
)
def test_image_folder_errors_are_clear(damage, message, tmp_path, registry):
    from infoopt.data import DataError
    from infoopt.data.registry import register_image_folders

    _write_folder(tmp_path / "pets", np.random.default_rng(4), 4, 3)
    damage(tmp_path / "pets")
    register_image_folders({"pets": _folder(tmp_path / "pets", side=4)})
    with pytest.raises(DataError, match=message):
        prepare("pets", tmp_path / "raw", tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()


def test_image_folder_in_the_config(tmp_path, registry, smoke_config):
    from conftest import SCHEMA
    from infoopt.config import ConfigError, model_spec
    from infoopt.validate import validate_config

    _write_folder(tmp_path / "pets", np.random.default_rng(5), 4, 3)
    smoke_config["datasets"] = {"pets": _folder(tmp_path / "pets", side=4)}
    smoke_config["experiments"]["paper"]["dataset"] = "pets"
    config = validate_config(smoke_config, SCHEMA)
    shape = {"num_classes": 3, "in_channels": 3, "image_size": 4}
    assert model_spec(config, "pets", "resnet18") | shape == model_spec(config, "pets", "resnet18")
    bad = {
        "missing": ({"path": str(tmp_path / "nowhere")}, "datasets.pets.path: "),
        "both": ({"url": "http://127.0.0.1/p.zip", "md5": "0" * 32}, "either a path or a url"),
        "known": ("mnist", "mnist is a known dataset"),
    }
    settings = dict(smoke_config["datasets"]["pets"])
    for edit, message in bad.values():
        if edit == "mnist":
            smoke_config["datasets"] = {"mnist": settings}
        else:
            smoke_config["datasets"] = {"pets": settings | edit}
        with pytest.raises(ConfigError, match=message):
            validate_config(smoke_config, SCHEMA)
