"""A checkpoint's Hessian split into shares and merged equals the unsharded computation."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

from infoopt.cli import main
from infoopt.hessian.metrics import (
    GLOBAL,
    checkpoint_hessian_table,
    merge_hessian_tables,
    shard_plan,
)
from infoopt.hessian.options import HessianOptions
from infoopt.models import build_model
from test_hessian import ARGS, write_checkpoint

OPTIONS = HessianOptions(max_k=5, probes=3, lanczos_max_iter=6, eval_size=24, seed=2)


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 40])
def test_plan_gives_every_block_to_one_share_and_balances(shards):
    numels = [3, 64, 9, 1000, 5, 5, 27, 128, 10]
    plan = shard_plan(numels, OPTIONS, shards)
    assert len(plan) == shards
    blocks = sorted(b for share, _ in plan for b in share)
    assert blocks == list(range(len(numels)))
    assert sum(global_share for _, global_share in plan) == 1
    costs = [min(n, OPTIONS.max_k) for n in numels]
    loads = [
        sum(costs[b] for b in share) + (OPTIONS.probes + OPTIONS.lanczos_max_iter) * g
        for share, g in plan
    ]
    biggest = max([*costs, OPTIONS.probes + OPTIONS.lanczos_max_iter])
    assert max(loads) - min(loads) <= biggest
    assert plan == shard_plan(numels, OPTIONS, shards), "the plan is deterministic"


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = build_model(
        "resnet18",
        num_classes=10,
        in_channels=1,
        image_size=8,
        options={"width": 4, "blocks": [1, 1, 1, 1]},
    )
    x, y = torch.randn(24, 1, 8, 8), torch.randint(0, 10, (24,))
    return model, x, y, checkpoint_hessian_table(model, x, y, OPTIONS)


@pytest.mark.parametrize("shards", [2, 3])
def test_merged_shares_equal_the_unsharded_table(problem, shards):
    model, x, y, whole = problem
    parts = [
        checkpoint_hessian_table(model, x, y, OPTIONS, shard=(i, shards)) for i in range(shards)
    ]
    merged = merge_hessian_tables(parts[::-1])
    pd.testing.assert_frame_equal(merged.drop(columns="seconds"), whole.drop(columns="seconds"))
    products = sum(p.loc[p["block"] == GLOBAL, "block_products"].iloc[0] for p in parts)
    assert merged.loc[merged["block"] == GLOBAL, "block_products"].iloc[0] == products


def test_merge_refuses_shares_that_do_not_fit(problem):
    model, x, y, _ = problem
    parts = [checkpoint_hessian_table(model, x, y, OPTIONS, shard=(i, 3)) for i in range(3)]
    with pytest.raises(ValueError, match=r"do not make up one checkpoint's table: shards \[0, 2\]"):
        merge_hessian_tables([parts[0], parts[2]])
    other = checkpoint_hessian_table(
        model, x, y, HessianOptions(**{**OPTIONS.__dict__, "max_k": 4}), shard=(1, 3)
    )
    with pytest.raises(ValueError, match="different options or checkpoints"):
        merge_hessian_tables([parts[0], other, parts[2]])


def test_command_shards_and_merges(tmp_path, digits_npz, capsys):
    write_checkpoint(tmp_path / "ckpt.pt")
    common = [str(tmp_path / "ckpt.pt"), "--data", str(digits_npz), *ARGS]
    whole = tmp_path / "whole.parquet"
    assert main(["hessian", *common, "--out", str(whole), "--store", str(tmp_path / "a")]) == 0
    parts = [tmp_path / f"part{i}.parquet" for i in (1, 2)]
    for i, part in enumerate(parts, start=1):
        assert main(["hessian", *common, "--out", str(part), "--shard", f"{i}/2"]) == 0
    merged = tmp_path / "merged.parquet"
    assert main(["hessian", *common, "--out", str(merged), "--merge", *map(str, parts)]) == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(merged).drop(columns="seconds"),
        pd.read_parquet(whole).drop(columns="seconds"),
    )
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["hessian", *common, "--out", str(merged), "--shard", "3/2"])
    assert "I must be in 1..N" in capsys.readouterr().err


@pytest.mark.workflow
def test_workflow_with_shards_writes_the_same_table(smoke_copy):
    """`hessian.shards: 3` computes a checkpoint's table as three jobs and a merge: the table
    is the unsharded one (the store emptied first, so that nothing is restored)."""
    from conftest import SMOKE, snakemake

    target = "results/runs/digits/vit/sgd/seed1/hessian/0.50.parquet"
    whole = pd.read_parquet(smoke_copy / target)
    shutil.rmtree(smoke_copy / "results/store/hessian")
    (smoke_copy / "shards.yaml").write_text("hessian:\n  shards: 3\n")
    experiment = "workflow/profiles/smoke/experiment.yaml"
    snakemake(smoke_copy, target, *SMOKE, "--configfile", experiment, "shards.yaml")
    logs = sorted((smoke_copy / "logs/hessian/digits/vit/sgd/seed1").glob("0.50.shard*.log"))
    assert [log.name for log in logs] == [f"0.50.shard{i}.log" for i in (1, 2, 3)]
    assert not list((smoke_copy / "results/runs").rglob("*.shard*.parquet")), "shares are temp"
    merged = pd.read_parquet(smoke_copy / target)
    pd.testing.assert_frame_equal(merged.drop(columns="seconds"), whole.drop(columns="seconds"))


def test_a_new_split_is_made_from_the_stored_results(tmp_path, digits_npz, capsys):
    """Changing `shards` computes no product twice: shares are cut from a stored whole table,
    and a whole table is merged from a stored complete split."""
    write_checkpoint(tmp_path / "ckpt.pt")
    common = [str(tmp_path / "ckpt.pt"), "--data", str(digits_npz), *ARGS]
    whole = tmp_path / "whole.parquet"
    assert main(["hessian", *common, "--out", str(whole)]) == 0
    capsys.readouterr()
    parts = [tmp_path / f"part{i}.parquet" for i in (1, 2, 3)]
    for i, part in enumerate(parts, start=1):
        assert main(["hessian", *common, "--out", str(part), "--shard", f"{i}/3"]) == 0
        assert "another split" in capsys.readouterr().err
    merged = tmp_path / "merged.parquet"
    assert main(["hessian", *common, "--out", str(merged), "--merge", *map(str, parts)]) == 0
    assert "restored from the store" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(merged), pd.read_parquet(whole))

    # The other way: shares computed in a store of their own, then the whole made from them.
    store = ["--store", str(tmp_path / "other")]
    for i, part in enumerate(parts, start=1):
        assert main(["hessian", *common, "--out", str(part), "--shard", f"{i}/3", *store]) == 0
    capsys.readouterr()
    again = tmp_path / "again.parquet"
    assert main(["hessian", *common, "--out", str(again), *store]) == 0
    assert "another split" in capsys.readouterr().err
    pd.testing.assert_frame_equal(
        pd.read_parquet(again).drop(columns="seconds"),
        pd.read_parquet(whole).drop(columns="seconds"),
    )
