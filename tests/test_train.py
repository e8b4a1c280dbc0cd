"""Training: checkpoints, determinism, resumption after SIGKILL, divergence, schedules."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from conftest import REPO, SCHEMA, resumable_step
from infoopt.checkpoint import load_checkpoint
from infoopt.cli import main
from infoopt.config import Run, init_spec, run_spec
from infoopt.records import RunSpec
from infoopt.train import checkpoint_steps, lr_factor, train_run
from infoopt.validate import validate_config

CPU = torch.device("cpu")
# Checkpoints with one in the middle of training (the smoke profile has only the two ends).
MID_AND_END = [0.0, 0.5, 1.0]


def make_spec(smoke_config, arch="resnet18", optimizer="sgd", seed=0, **training):
    config = validate_config(smoke_config, SCHEMA)
    config["archs"][arch].update({k: v for k, v in training.items() if k in ("epochs",)})
    spec = run_spec(config, Run("digits", arch, optimizer, seed))
    spec["training"].update({k: v for k, v in training.items() if k != "epochs"})
    return config, spec


def init_file(config, spec, folder):
    path = folder / f"init-{spec['arch']}-{spec['seed']}.pt"
    if not path.exists():
        init = init_spec(config, spec["dataset"], spec["arch"], spec["seed"])
        assert main(["init", "--spec", json.dumps(init), "--out", str(path)]) == 0
    return path


def weights(path):
    return load_checkpoint(path)["state_dict"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_lr_schedule_closed_form():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(70, 100, 0, "cosine") == pytest.approx(0.5 * (1 + math.cos(0.7 * math.pi)))
    assert lr_factor(70, 100, 0, "constant") == 1.0


def test_checkpoint_steps():
    steps = checkpoint_steps([0.0, 0.01, 0.25, 0.5, 0.75, 1.0], 440)
    assert steps == {0.0: 0, 0.01: 4, 0.25: 110, 0.5: 220, 0.75: 330, 1.0: 440}


def test_run_outputs(smoke_config, digits_npz, tmp_path):
    config, spec = make_spec(smoke_config, epochs=2)
    init = init_file(config, spec, tmp_path)
    out = tmp_path / "run"
    assert train_run(RunSpec.from_dict(spec), init, digits_npz, out, CPU) == "ok"

    record = json.loads((out / "run.json").read_text())
    steps_per_epoch = 1437 // spec["training"]["batch_size"]
    assert record["status"] == "ok" and record["total_steps"] == 2 * steps_per_epoch
    assert [c["progress"] for c in record["checkpoints"]] == spec["training"]["checkpoints"]
    assert record["spec"] == spec and record["provenance"]["packages"]["torch"] == torch.__version__
    for checkpoint in record["checkpoints"]:
        assert 0 <= checkpoint["test_accuracy"] <= 100 and checkpoint["test_loss"] > 0
    assert record["checkpoints"][-1]["test_accuracy"] > 30, "training learns something"

    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert history["lr"].iloc[-1] == pytest.approx(0.0, abs=1e-12), "cosine ends at zero"
    assert not (out / ".partial").exists()

    assert_same_weights(weights(out / "ckpt/0.00.pt"), weights(init))
    final = load_checkpoint(out / "ckpt/1.00.pt")
    assert final["status"] == "ok" and final["step"] == record["total_steps"]
    assert final["metrics"]["test_accuracy"] == record["checkpoints"][-1]["test_accuracy"]


def test_same_seed_is_bit_identical_and_seeds_differ(smoke_config, digits_npz, tmp_path):
    config, spec = make_spec(smoke_config, arch="vit", optimizer="adam", epochs=1)
    init = init_file(config, spec, tmp_path)
    for name in ("a", "b"):
        train_run(RunSpec.from_dict(spec), init, digits_npz, tmp_path / name, CPU)
    assert_same_weights(weights(tmp_path / "a/ckpt/1.00.pt"), weights(tmp_path / "b/ckpt/1.00.pt"))

    _, other = make_spec(smoke_config, arch="vit", optimizer="adam", seed=1, epochs=1)
    other_init = init_file(config, other, tmp_path)
    assert not torch.equal(weights(other_init)["pos_embedding"], weights(init)["pos_embedding"]), (
        "another seed starts elsewhere"
    )


def test_every_optimizer_of_an_arch_starts_from_the_shared_init(smoke_config, digits_npz, tmp_path):
    config, sgd = make_spec(smoke_config, optimizer="sgd", epochs=1)
    _, adam = make_spec(smoke_config, optimizer="adam", epochs=1)
    init = init_file(config, sgd, tmp_path)
    for spec in (sgd, adam):
        train_run(RunSpec.from_dict(spec), init, digits_npz, tmp_path / spec["optimizer"], CPU)
    start = [load_checkpoint(tmp_path / f"{o}/ckpt/0.00.pt") for o in ("sgd", "adam")]
    assert_same_weights(start[0]["state_dict"], start[1]["state_dict"])
    assert start[0]["metrics"] == start[1]["metrics"]


# Besides SGD: Muon with AdamW for the rest (parameter groups), and an optimizer of another
# package, with a train and an eval mode.
@pytest.mark.parametrize(("optimizer", "epochs"), [("sgd", 12), ("muon", 3), ("schedulefree", 3)])
def test_resume_after_sigkill_gives_the_uninterrupted_weights(
    optimizer, epochs, smoke_config, digits_npz, tmp_path, capfd
):
    smoke_config["optimizers"]["schedulefree"] = {"algorithm": "schedulefree.AdamWScheduleFree"}
    config, spec = make_spec(
        smoke_config, arch="vit", optimizer=optimizer, epochs=epochs, checkpoints=MID_AND_END
    )
    init = init_file(config, spec, tmp_path)
    # Bit-identical only at the same thread count: a parallel reduction's order depends on it.
    torch.set_num_threads(1)
    train_run(RunSpec.from_dict(spec), init, digits_npz, tmp_path / "whole", CPU)
    total_steps = json.loads((tmp_path / "whole/run.json").read_text())["total_steps"]

    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "infoopt",
        "train",
        "--spec",
        json.dumps(spec),
        "--init",
        str(init),
        "--data",
        str(digits_npz),
        "--out-dir",
        str(out),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--store",
        str(tmp_path / "store"),
    ]
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}
    killed_log = tmp_path / "killed.log"
    with killed_log.open("w") as log:
        process = subprocess.Popen(command, env=env, stderr=log, stdout=log)
        deadline = time.monotonic() + 120
        while resumable_step(tmp_path / "store") == 0:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"no resume state was saved:\n{killed_log.read_text()[-2000:]}")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL, "the run was killed before it could finish"
    assert "Traceback" not in killed_log.read_text(), killed_log.read_text()[-2000:]
    assert not (out / "run.json").exists()
    # Read after the kill: the state cannot move on any more.
    saved_step = resumable_step(tmp_path / "store")
    assert 0 < saved_step < total_steps

    capfd.readouterr()
    assert main(command[3:]) == 0
    resumed_at = [
        int(s) for s in re.findall(r"resum\w* (?:at|from) step (\d+)", capfd.readouterr().err)
    ]
    assert resumed_at == [saved_step], "the restarted run goes on from its saved state"
    assert json.loads((out / "run.json").read_text())["status"] == "ok"
    for progress in ("0.50", "1.00"):
        assert_same_weights(
            weights(out / f"ckpt/{progress}.pt"), weights(tmp_path / f"whole/ckpt/{progress}.pt")
        )
    whole = pd.read_csv(tmp_path / "whole/history.csv")
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "history.csv").drop(columns="seconds"), whole.drop(columns="seconds")
    )


def test_resume_state_of_another_configuration_is_discarded(smoke_config, digits_npz, tmp_path):
    config, spec = make_spec(smoke_config, epochs=1)
    init = init_file(config, spec, tmp_path)
    out = tmp_path / "run"
    stale = dict(spec, hparams={**spec["hparams"], "lr": 0.5})
    (out / ".partial").mkdir(parents=True)
    torch.save({"spec": stale, "state": {"step": 10**6}}, out / ".partial" / "resume.pt")
    assert train_run(RunSpec.from_dict(spec), init, digits_npz, out, CPU) == "ok"
    assert json.loads((out / "run.json").read_text())["steps_done"] == 1437 // 64


def test_an_unreadable_resume_state_is_discarded(smoke_config, digits_npz, tmp_path, capsys):
    config, spec = make_spec(smoke_config, epochs=1)
    init = init_file(config, spec, tmp_path)
    out = tmp_path / "run"
    (out / ".partial").mkdir(parents=True)
    torch.save({"spec": spec, "progress": {"step": 10**6}}, out / ".partial" / "resume.pt")
    assert train_run(RunSpec.from_dict(spec), init, digits_npz, out, CPU) == "ok"
    assert "cannot be read" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["steps_done"] == 1437 // 64


def test_divergence_stops_cleanly_and_marks_checkpoints(smoke_config, digits_npz, tmp_path):
    config, spec = make_spec(smoke_config, epochs=3, checkpoints=MID_AND_END)
    spec["hparams"]["lr"] = 1.0e8
    init = init_file(config, spec, tmp_path)
    out = tmp_path / "run"
    assert train_run(RunSpec.from_dict(spec), init, digits_npz, out, CPU) == "diverged"

    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "diverged" and record["steps_done"] < record["total_steps"]
    statuses = {c["progress"]: c["status"] for c in record["checkpoints"]}
    assert statuses[0.0] == "ok" and statuses[1.0] == "diverged"
    final = load_checkpoint(out / "ckpt/1.00.pt")
    assert final["status"] == "diverged" and final["state_dict"] is None
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["0.00.pt", "0.50.pt", "1.00.pt"]


def test_init_of_another_model_is_refused(smoke_config, digits_npz, tmp_path):
    config, spec = make_spec(smoke_config, arch="resnet18", epochs=1)
    _, vit = make_spec(smoke_config, arch="vit", epochs=1)
    wrong_init = init_file(config, vit, tmp_path)
    with pytest.raises(ValueError, match="rerun `infoopt init`"):
        train_run(RunSpec.from_dict(spec), wrong_init, digits_npz, tmp_path / "run", CPU)


def test_a_run_under_another_name_is_restored_relabelled_not_trained(
    smoke_config, digits_npz, tmp_path, capsys, monkeypatch
):
    """A grid point at an optimizer's own settings is that optimizer's run: trained and
    measured once, its files placed under the other name with that name inside."""
    import infoopt.train
    from infoopt.store import Store

    config, spec = make_spec(smoke_config, epochs=1)
    spec["training"]["checkpoints"] = [0.0, 1.0]
    init = init_file(config, spec, tmp_path)
    point = dict(spec, optimizer="sgd-batch_size64-lr0p1")
    steps = []
    train_step = infoopt.train.train_step
    monkeypatch.setattr(
        infoopt.train, "train_step", lambda *args: steps.append(1) or train_step(*args)
    )

    def train(run_spec, out):
        args = ["train", "--spec", json.dumps(run_spec), "--init", str(init)]
        assert main([*args, "--data", str(digits_npz), "--out-dir", str(out)]) == 0
        return capsys.readouterr().out

    assert "stored as" in train(spec, tmp_path / "sgd")
    trained = len(steps)
    assert trained == 1437 // 64
    log = train(point, tmp_path / "point")
    assert "restored from the store" in log and "trained as sgd" in log
    assert len(steps) == trained, "the second name took no training step"

    record = json.loads((tmp_path / "point/run.json").read_text())
    assert record["spec"] == point
    for progress in ("0.00", "1.00"):
        first, second = (
            load_checkpoint(tmp_path / f"{o}/ckpt/{progress}.pt") for o in ("sgd", "point")
        )
        assert (first["optimizer"], second["optimizer"]) == ("sgd", point["optimizer"])
        assert_same_weights(first["state_dict"], second["state_dict"])
        assert first["metrics"] == second["metrics"]
    (entry,) = Store(tmp_path / "store").entries()
    (tmp_path / "sgd/run.json").unlink()
    assert entry.in_use(), "the relabelled copies are a use of the entry"

    # Its Hessian too is measured once: the relabelled checkpoint has the same key.
    hessian = ["--data", str(digits_npz), "--eval-size", "16", "--max-k", "4", "--probes", "1"]
    hessian += ["--lanczos-max-iter", "3", "--device", "cpu"]
    tables = {}
    for name in ("sgd", "point"):
        out = tmp_path / f"{name}.parquet"
        assert (
            main(["hessian", str(tmp_path / f"{name}/ckpt/1.00.pt"), *hessian, "--out", str(out)])
            == 0
        )
        tables[name] = pd.read_parquet(out)
    assert "restored from the store" in capsys.readouterr().out
    assert set(tables["point"]["optimizer"]) == {point["optimizer"]}
    pd.testing.assert_frame_equal(
        tables["point"].drop(columns="optimizer"), tables["sgd"].drop(columns="optimizer")
    )
