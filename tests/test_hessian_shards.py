"""A checkpoint's Hessian computed in any shares of its parts and assembled equals the
unsharded table, and a new split finds every part in the store."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO
from infoopt.cli import main
from infoopt.hessian import metrics
from infoopt.hessian.metrics import checkpoint_hessian_table, hessian_operator, hessian_parts
from infoopt.hessian.options import ESTIMATES, HessianOptions
from infoopt.hessian.shares import balance, plan_shares
from infoopt.hessian.table import GLOBAL, hessian_table
from infoopt.store import Store
from test_hessian import ARGS, make_data, make_model, write_checkpoint

OPTIONS = HessianOptions(max_k=5, probes=3, lanczos_max_iter=6, eval_size=24, seed=2)


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 40])
def test_plan_gives_every_part_to_one_share_and_balances(shards):
    blocks = [3.0, 64.0, 9.0, 1000.0, 5.0, 5.0, 27.0, 128.0, 10.0]
    estimates = {"traces": 300.0, "top_eigenvalue": 100.0}
    plan = balance(blocks, estimates, shards)
    assert len(plan) == shards
    assert sorted(b for share in plan for b in share.blocks) == list(range(len(blocks)))
    assert sorted(e for share in plan for e in share.estimates) == sorted(estimates)
    loads = [
        sum(blocks[b] for b in share.blocks) + sum(estimates[e] for e in share.estimates)
        for share in plan
    ]
    assert max(loads) - min(loads) <= max([*blocks, *estimates.values()])
    assert plan == balance(blocks, estimates, shards), "the plan is deterministic"


def test_paper_resnet18_shares_are_balanced_by_real_costs():
    """ResNet18's blocks are Gauss-Newton blocks, cheap beside the estimates' full products:
    two shares take one estimate each, and neither does much more than half the work."""
    from infoopt.hessian.cost import predict

    model = {"name": "resnet18", "num_classes": 10, "in_channels": 3, "image_size": 32}
    options = HessianOptions()
    whole = predict(options, model).seconds
    plan = plan_shares(options, model, 2)
    assert sorted(len(share.estimates) for share in plan) == [1, 1]
    seconds = [
        predict(options, model, blocks=s.blocks, estimates=s.estimates).seconds for s in plan
    ]
    assert max(seconds) < 0.6 * whole


def splits(blocks: int, seed: int) -> list[list[tuple[list[int], list[str]]]]:
    """Ways to split the parts: one share each, then random shares."""
    alone = [([b], []) for b in range(blocks)] + [([], [e]) for e in ESTIMATES]
    found = [alone]
    rng = random.Random(seed)
    for count in (2, 3):
        shares: list[tuple[list[int], list[str]]] = [([], []) for _ in range(count)]
        for b in range(blocks):
            shares[rng.randrange(count)][0].append(b)
        for e in ESTIMATES:
            shares[rng.randrange(count)][1].append(e)
        found.append(shares)
    return found


# The default budget keeps everything; a tiny one rebuilds every graph and plans the
# Gauss-Newton pass's micro-batches within it.
@pytest.mark.parametrize("budget", [8.0, 0.0])
@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_any_split_of_the_parts_gives_the_unsharded_table(name, budget):
    model, (x, y) = make_model(name), make_data(n=12)
    options = HessianOptions(**(vars(OPTIONS) | {"memory_budget_gb": budget}))
    whole = checkpoint_hessian_table(model, x, y, options)
    blocks = len(whole) - 1
    for split in splits(blocks, seed=blocks):
        parts = [
            hessian_parts(hessian_operator(model, x, y, options), options, share, estimates)
            for share, estimates in reversed(split)
        ]
        assembled = hessian_table(pd.concat(parts, ignore_index=True))
        pd.testing.assert_frame_equal(
            assembled.drop(columns="seconds"), whole.drop(columns="seconds")
        )


def test_assembly_refuses_parts_that_do_not_fit():
    model, (x, y) = make_model("cnn"), make_data()
    operator = hessian_operator(model, x, y, OPTIONS)
    parts = hessian_parts(operator, OPTIONS, range(len(operator.space)), ESTIMATES)
    hessian_table(parts)
    first = parts["block"] == parts["block"].iloc[0]
    with pytest.raises(ValueError, match="each block's row exactly once"):
        hessian_table(parts[~(first & (parts["part"] == "block")).to_numpy()])
    with pytest.raises(ValueError, match="each block's row exactly once"):
        hessian_table(pd.concat([parts, parts[(first & (parts["part"] == "block")).to_numpy()]]))
    with pytest.raises(ValueError, match="top_eigenvalue exactly once"):
        hessian_table(parts[(parts["part"] != "top_eigenvalue").to_numpy()])
    other = parts.assign(option_max_k=4)
    with pytest.raises(ValueError, match="different checkpoints or options"):
        hessian_table(pd.concat([parts[parts["part"] == "block"], other[other["part"] != "block"]]))


def run_hessian(tmp_path, *arguments: str) -> None:
    common = [str(tmp_path / "ckpt.pt"), "--data", str(tmp_path / "digits.npz"), *ARGS]
    assert main(["hessian", *common, *arguments, "--store", str(tmp_path / "store")]) == 0


@pytest.fixture
def checkpoint_dir(tmp_path, digits_npz):
    write_checkpoint(tmp_path / "ckpt.pt")
    shutil.copy(digits_npz, tmp_path / "digits.npz")
    return tmp_path


SHARES = [("0,3,5", "traces"), ("1,2,4", ""), ("", "top_eigenvalue")]


def test_command_shares_and_assembles_without_torch(checkpoint_dir):
    """The parts computed by three jobs assemble, in a process that never imports torch, to the
    table one job writes; a store of its own for each, so that nothing is restored."""
    tmp = checkpoint_dir
    whole = tmp / "whole.parquet"
    run_hessian(tmp, "--out", str(whole), "--keep", str(tmp / "kept"))
    blocks = len(pd.read_parquet(whole)) - 1
    # A part's copy under --keep keeps its entry from `infoopt store prune`.
    entries = Store(tmp / "store").entries()
    assert len(entries) == blocks + len(ESTIMATES) and all(e.in_use() for e in entries)
    rest = ",".join(str(b) for b in range(6, blocks))
    shares = [*SHARES[:2], (rest, ""), SHARES[2]]
    parts = [tmp / f"part{i}.parquet" for i in range(len(shares))]
    shutil.rmtree(tmp / "store")
    for part, (chosen, estimates) in zip(parts, shares, strict=True):
        run_hessian(tmp, "--out", str(part), "--blocks", chosen, "--estimates", estimates)
    assembled = tmp / "assembled.parquet"
    script = (
        "import sys; from infoopt.cli import main; "
        f"main(['hessian', '--out', {str(assembled)!r}, '--assemble', "
        f"*{[str(p) for p in parts]!r}]); "
        "assert 'torch' not in sys.modules, 'the assembly imported torch'"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO)
    pd.testing.assert_frame_equal(
        pd.read_parquet(assembled).drop(columns="seconds"),
        pd.read_parquet(whole).drop(columns="seconds"),
    )


def test_a_new_split_computes_nothing(checkpoint_dir, monkeypatch, capsys):
    """Changing the shares on a finished checkpoint is a lookup: every part is in the store
    under its own key, so no product is computed (the numerics are never called)."""
    tmp = checkpoint_dir
    whole = tmp / "whole.parquet"
    run_hessian(tmp, "--out", str(whole))
    blocks = len(pd.read_parquet(whole)) - 1
    capsys.readouterr()

    def refuse(*args, **kwargs):
        raise AssertionError("a stored part was computed again")

    monkeypatch.setattr(metrics, "hessian_parts", refuse)
    run_hessian(tmp, "--out", str(tmp / "restored.parquet"))
    assert (tmp / "restored.parquet").read_bytes() == whole.read_bytes(), "the same file again"
    shares = [*SHARES, (",".join(map(str, range(6, blocks))), "")]
    parts = [tmp / f"part{i}.parquet" for i in range(len(shares))]
    for part, (chosen, estimates) in zip(parts, shares, strict=True):
        run_hessian(tmp, "--out", str(part), "--blocks", chosen, "--estimates", estimates)
    assert capsys.readouterr().out.count("parts restored from the store") == 5
    assert (
        main(["hessian", "--out", str(tmp / "again.parquet"), "--assemble", *map(str, parts)]) == 0
    )
    again = pd.read_parquet(tmp / "again.parquet")
    pd.testing.assert_frame_equal(
        again.drop(columns="seconds"), pd.read_parquet(whole).drop(columns="seconds")
    )
    # The seconds are those the parts took when they were computed, added in another order.
    assert again["seconds"].iloc[-1] == pytest.approx(pd.read_parquet(whole)["seconds"].iloc[-1])

    # The other way: the whole table from parts computed as shares, again without a product.
    monkeypatch.undo()
    shutil.rmtree(tmp / "store")
    for part, (chosen, estimates) in zip(parts, shares, strict=True):
        run_hessian(tmp, "--out", str(part), "--blocks", chosen, "--estimates", estimates)
    monkeypatch.setattr(metrics, "hessian_parts", refuse)
    run_hessian(tmp, "--out", str(tmp / "whole_again.parquet"))
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp / "whole_again.parquet").drop(columns="seconds"),
        pd.read_parquet(whole).drop(columns="seconds"),
    )


def test_command_names_a_bad_share(checkpoint_dir, capsys):
    with pytest.raises(SystemExit):
        run_hessian(checkpoint_dir, "--out", "x.parquet", "--estimates", "traces,spectrum")
    assert "unknown estimate(s) spectrum; valid: traces, top_eigenvalue" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_hessian(checkpoint_dir, "--out", "x.parquet", "--blocks", "1,1")
    assert "distinct" in capsys.readouterr().err


@pytest.mark.workflow
def test_workflow_with_shards_writes_the_same_table(smoke_copy):
    """`hessian.shards: 3` computes a checkpoint's table as three jobs and an assembly: the
    table is the unsharded one (the store emptied first, so that nothing is restored)."""
    from conftest import SMOKE, snakemake

    target = "results/runs/digits/vit/sgd/seed1/hessian/1.00.parquet"
    whole = pd.read_parquet(smoke_copy / target)
    shutil.rmtree(smoke_copy / "results/store/hessian")
    (smoke_copy / "shards.yaml").write_text("hessian:\n  shards: 3\n")
    experiment = "workflow/profiles/smoke/experiment.yaml"
    snakemake(smoke_copy, target, *SMOKE, "--configfile", experiment, "shards.yaml")
    logs = sorted((smoke_copy / "logs/hessian/digits/vit/sgd/seed1").glob("1.00.shard*.log"))
    assert [log.name for log in logs] == [f"1.00.shard{i}.log" for i in (1, 2, 3)]
    assert not list((smoke_copy / "results/runs").rglob("*.shard*.parquet")), "shares are temp"
    merged = pd.read_parquet(smoke_copy / target)
    pd.testing.assert_frame_equal(merged.drop(columns="seconds"), whole.drop(columns="seconds"))
    assert merged.loc[merged["block"] == GLOBAL, "block_products"].notna().all()
