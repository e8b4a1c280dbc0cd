"""Canonical specs, content digests and the result store, without Snakemake."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from infoopt.canonical import canonical_json, normalize
from infoopt.cli import main
from infoopt.digest import file_digest, value_digest
from infoopt.store import Store, StoreError, result_key, run_stored


def test_canonical_json_ignores_key_order_and_number_spelling():
    a = {"training": {"epochs": 8, "checkpoints": [0.0, 1.0]}, "hparams": {"lr": 1.0}}
    b = {"hparams": {"lr": 1}, "training": {"checkpoints": (0, 1.0), "epochs": 8.0}}
    assert (
        canonical_json(a)
        == canonical_json(b)
        == ('{"hparams":{"lr":1},"training":{"checkpoints":[0,1],"epochs":8}}')
    )
    assert canonical_json({"x": -0.0}) == '{"x":0}'
    assert (
        canonical_json({"lr": 1e-3})
        == canonical_json({"lr": 0.001})
        != canonical_json({"lr": 0.0011})
    )
    assert json.loads(canonical_json({"b": True, "n": None})) == {"b": True, "n": None}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: 2}, object()])
def test_canonical_json_refuses_what_has_no_json_form(bad):
    with pytest.raises(ValueError):
        normalize({"x": bad})


def test_value_digest_hashes_content_not_storage():
    weights = torch.arange(6.0).reshape(2, 3)
    assert value_digest({"w": weights}) == value_digest({"w": weights.clone()})
    assert value_digest({"w": weights}) == value_digest({"w": weights.t().contiguous().t()})
    assert value_digest({"w": weights}) != value_digest({"w": weights.reshape(3, 2)})
    assert value_digest({"w": weights}) != value_digest({"w": weights.double()})
    changed = weights.clone()
    changed[1, 2] = 5.0001
    assert value_digest({"w": weights}) != value_digest({"w": changed})
    assert value_digest({"a": 1, "b": 2}) == value_digest({"b": 2, "a": 1})
    assert value_digest(np.int64(10)) == value_digest(np.asarray(10, dtype=np.int64))


def test_result_key_depends_on_spec_inputs_and_kind():
    key = result_key("train", {"lr": 0.1}, {"data": "a"})
    assert key == result_key("train", {"lr": 0.1}, {"data": "a"})
    assert key != result_key("train", {"lr": 0.2}, {"data": "a"})
    assert key != result_key("train", {"lr": 0.1}, {"data": "b"})
    assert key != result_key("hessian", {"lr": 0.1}, {"data": "a"})


def _computer(calls: list, payload: bytes = b"weights"):
    def compute(result_dir, state_dir):
        calls.append(state_dir)
        (result_dir / "ckpt").mkdir(parents=True)
        (result_dir / "ckpt" / "1.00.pt").write_bytes(payload)
        (result_dir / "run.json").write_text('{"status": "ok"}')

    return compute


def _into(folder):
    return lambda entry: {name: folder / name for name in entry.files}


def test_a_stored_result_is_restored_not_recomputed(tmp_path):
    store, calls = Store(tmp_path / "store"), []
    description = {"label": "run a"}
    entry, restored = run_stored(
        store, "train", "k1", description, _computer(calls), _into(tmp_path / "a")
    )
    assert not restored and len(calls) == 1
    assert (tmp_path / "a/ckpt/1.00.pt").read_bytes() == b"weights"
    assert not store.partials(), "a filed result leaves no state behind"
    assert not os.stat(entry.path / "run.json").st_mode & 0o222, "stored files are read-only"
    assert entry.in_use()

    # Snakemake deleted the outputs (a changed rule): the next job places them again.
    (tmp_path / "a/ckpt/1.00.pt").unlink()
    (tmp_path / "a/run.json").unlink()
    assert not entry.in_use()
    before = os.stat(entry.path / "run.json").st_mtime_ns
    again, restored = run_stored(
        store, "train", "k1", description, _computer(calls), _into(tmp_path / "a")
    )
    assert restored and len(calls) == 1
    assert (tmp_path / "a/ckpt/1.00.pt").read_bytes() == b"weights"
    assert os.stat(tmp_path / "a/run.json").st_mtime_ns >= before, "placed with a new time"
    assert again.in_use() and store.get("train", "k1").record["label"] == "run a"
    (tmp_path / "a/run.json").write_text("edited in place")
    assert store.get("train", "k1").files["run.json"]["sha256"] == file_digest(
        entry.path / "run.json"
    ), "an output edited in place leaves the stored result as it was"
    assert not again.in_use()


def test_a_damaged_entry_is_named_and_not_placed(tmp_path):
    store = Store(tmp_path / "store")
    entry, _ = run_stored(
        store, "train", "k1", {"label": "x"}, _computer([]), _into(tmp_path / "a")
    )
    (tmp_path / "a/run.json").unlink()
    (entry.path / "ckpt/1.00.pt").chmod(0o644)
    (entry.path / "ckpt/1.00.pt").write_bytes(b"weightz")
    with pytest.raises(StoreError, match=r"damaged: ckpt/1.00.pt.*infoopt store remove"):
        run_stored(store, "train", "k1", {"label": "x"}, _computer([]), _into(tmp_path / "a"))
    assert not (tmp_path / "a/run.json").exists()


def test_a_failed_computation_files_nothing_and_keeps_its_state(tmp_path):
    store = Store(tmp_path / "store")

    def crash(result_dir, state_dir):
        state_dir.mkdir(parents=True)
        (state_dir / "resume.pt").write_bytes(b"step 5")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run_stored(store, "train", "k1", {"label": "x"}, crash, _into(tmp_path / "a"))
    assert store.get("train", "k1") is None and not store.entries()
    assert (store.partial("train", "k1") / "state/resume.pt").read_bytes() == b"step 5"
    calls = []
    run_stored(store, "train", "k1", {"label": "x"}, _computer(calls), _into(tmp_path / "a"))
    assert calls == [store.partial("train", "k1") / "state"], "the retry gets the same state"


def test_store_list_and_prune(tmp_path, capsys):
    root = tmp_path / "store"
    store = Store(root)
    run_stored(store, "train", "used", {"label": "kept"}, _computer([]), _into(tmp_path / "a"))
    run_stored(
        store, "train", "old", {"label": "edited"}, _computer([], b"x"), _into(tmp_path / "b")
    )
    (tmp_path / "b/run.json").write_text('{"status": "changed"}')
    assert main(["store", "list", "--store", str(root)]) == 0
    listing = capsys.readouterr().out
    assert "in use" in listing and "unused" in listing and "2 entries" in listing
    assert main(["store", "prune", "--store", str(root)]) == 0
    assert "would remove" in capsys.readouterr().out and len(store.entries()) == 2
    assert main(["store", "prune", "--yes", "--store", str(root)]) == 0
    assert [e.record["label"] for e in store.entries()] == ["kept"]
    assert file_digest(tmp_path / "a/run.json") == store.entries()[0].files["run.json"]["sha256"]
    assert main(["store", "remove", "used", "--yes", "--store", str(root)]) == 0
    assert not store.entries()
