"""The cost model of a Hessian job (infoopt.hessian.cost): the work it counts is the work a run
does, its predictions move the right way, and the workflow's Hessian jobs ask for them."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from conftest import REPO, SCHEMA, SMOKE, copy_workflow, snakemake, snakemake_env
from infoopt.hessian.cost import DEVICE_KINDS, load_costs, predict
from infoopt.hessian.hvp import HessianOperator
from infoopt.hessian.metrics import hessian_operator, hessian_parts
from infoopt.hessian.options import ESTIMATES, HessianOptions
from infoopt.hessian.shares import plan_shares
from infoopt.models import MODELS, build_model

PAPER = HessianOptions()
RESNET = {"name": "resnet18", "num_classes": 10, "in_channels": 3, "image_size": 32, "options": {}}
TINY = {
    "name": "resnet18",
    "num_classes": 10,
    "in_channels": 1,
    "image_size": 8,
    "options": {"width": 2, "blocks": [1, 1, 1, 1]},
}
# Lanczos cannot converge before its last step at this tolerance: it spends every product.
TINY_OPTIONS = HessianOptions(
    eval_size=7, max_k=3, probes=5, probe_batch=2, lanczos_max_iter=4, lanczos_tol=1e-12
)


def test_every_model_family_has_costs_on_every_device_kind():
    """Every number reads as a float (YAML reads 1e6 as text)."""
    costs = load_costs()
    for kind in DEVICE_KINDS:
        assert isinstance(costs[kind]["base_bytes"], float)
        for name in MODELS:
            numbers = costs[kind][name]
            assert set(numbers) == {"gradient", "product", "block_product", "graph_bytes"}
            assert all(isinstance(value, float) and value > 0 for value in numbers.values())


# The whole job, and two shares: half the blocks and one estimate each.
SHARES = [None, (range(0, 18), ("traces",)), (range(18, 38), ("top_eigenvalue",))]


# A budget that keeps the one micro-batch, and none that keeps any of 3 micro-batches.
@pytest.mark.parametrize("budget", [{}, {"memory_budget_gb": 0.0, "micro_batch_size": 3}])
@pytest.mark.parametrize("share", SHARES)
def test_counts_are_what_a_run_spends(monkeypatch, budget, share):
    """Products as the table's global row records them; graphs built as the operator builds
    them (but the footprint's probe, one more)."""
    options = dataclasses.replace(TINY_OPTIONS, **budget)
    builds = []
    build = HessianOperator._build

    def counted(operator, batch):
        builds.append(batch)
        return build(operator, batch)

    monkeypatch.setattr(HessianOperator, "_build", counted)
    torch.manual_seed(0)
    model = build_model(**TINY)
    x, y = torch.randn(7, 1, 8, 8), torch.randint(0, 10, (7,))
    operator = hessian_operator(model, x, y, options)
    blocks, estimates = share or (range(len(operator.space)), ESTIMATES)
    spent = hessian_parts(operator, options, blocks, estimates)
    chosen = {"blocks": blocks, "estimates": estimates} if share else {}
    prediction = predict(options, TINY, **chosen)
    assert prediction.block_products == spent["block_products"].sum()
    assert prediction.full_products == spent["full_products"].sum()
    assert prediction.builds == len(builds) - 1


def seconds(**changes) -> float:
    return predict(dataclasses.replace(PAPER, **changes), RESNET).seconds


def test_more_work_takes_longer():
    base = seconds()
    assert seconds(eval_size=4096) > base > seconds(eval_size=1024)
    assert seconds(probes=200) > base > seconds(probes=10)
    assert seconds(max_k=128) > base > seconds(max_k=16)
    assert seconds(lanczos_max_iter=200) > base > seconds(lanczos_max_iter=10)
    assert seconds(dtype="float64") > base


def test_a_smaller_budget_rebuilds_more_and_takes_longer():
    predictions = [
        predict(dataclasses.replace(PAPER, memory_budget_gb=gb), RESNET) for gb in (64, 8, 2, 0)
    ]
    builds = [p.builds for p in predictions]
    assert builds == sorted(builds) and builds[0] < builds[-1]
    assert [p.seconds for p in predictions] == sorted(p.seconds for p in predictions)
    assert predictions[0].plan.kept == predictions[0].plan.count == 1, "64 GiB keeps everything"
    assert predictions[-1].plan.kept == 0
    peaks = [p.peak_bytes for p in predictions]
    assert peaks == sorted(peaks, reverse=True)


def test_devices():
    cuda = predict(PAPER, RESNET, device_kind="cuda")
    cpu = predict(PAPER, RESNET)
    assert cuda.seconds < cpu.seconds
    assert cuda.host_bytes < cpu.host_bytes, "the graphs live on the GPU"
    with pytest.raises(ValueError, match="unknown device kind 'tpu'; valid: cpu, cuda"):
        predict(PAPER, RESNET, device_kind="tpu")


@pytest.mark.parametrize("shards", [2, 5])
def test_shares_add_up_to_the_unsharded_job(shards):
    whole = predict(PAPER, RESNET)
    shares = [
        predict(PAPER, RESNET, blocks=share.blocks, estimates=share.estimates)
        for share in plan_shares(PAPER, RESNET, shards)
    ]
    assert sum(s.block_products for s in shares) == whole.block_products
    assert sum(s.full_products for s in shares) == whole.full_products
    # Each share builds the graphs it keeps once: a little more than the whole job together (or,
    # when only the global share builds graphs, as much up to rounding).
    total = sum(s.seconds for s in shares)
    assert whole.seconds * (1 - 1e-12) <= total < 1.05 * whole.seconds
    assert all(s.seconds < whole.seconds for s in shares)


def test_requests_grow_with_each_retry_above_their_floors():
    tiny = predict(HessianOptions(eval_size=8, max_k=2, probes=0, lanczos_max_iter=0), TINY)
    assert tiny.minutes(1) == 11 and tiny.mem_mb(1) > 1000
    paper = predict(PAPER, RESNET)
    for prediction in (tiny, paper):
        assert prediction.minutes(1) < prediction.minutes(2) < prediction.minutes(3)
        assert prediction.mem_mb(1) < prediction.mem_mb(2) < prediction.mem_mb(3)
    assert paper.minutes(1) > 1.5 * paper.seconds / 60
    assert paper.mem_mb(1) > 1.25 * paper.host_bytes / 1e6


PREDICT_AND_REPORT_DYNAMO = """
import sys
from infoopt.hessian.cost import predict
from infoopt.hessian.options import HessianOptions
predict(HessianOptions(), {model!r})
print("torch._dynamo" in sys.modules)
"""


def test_model_sizes_are_measured_once_per_machine(tmp_path):
    """The first process counts a model's FLOPs (which imports torch._dynamo); the next reads
    the cache and predicts the same without that import; a damaged cache is measured again."""
    import json
    import subprocess
    import sys

    from infoopt.hessian import cost

    env = snakemake_env() | {"XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(REPO / "src")}

    def imports_dynamo() -> bool:
        script = PREDICT_AND_REPORT_DYNAMO.format(model=TINY)
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        return result.stdout.split() == ["True"]

    cache = tmp_path / "infoopt" / "model_sizes.json"
    assert imports_dynamo() and cache.exists()
    assert not imports_dynamo()
    stored = json.loads(cache.read_text())
    keys = stored.keys()
    cached = {key.split(" ", 1)[1]: size for key, size in stored.items()}
    for spec, size in cached.items():
        assert cost._measure(spec) == cost._Size(
            tuple(size["numels"]), size["flops"], size["saved_bytes"]
        )
    cache.write_text("{not json")
    assert imports_dynamo() and json.loads(cache.read_text()).keys() == keys


def test_graphless_blocks_are_found_once_per_machine(tmp_path, monkeypatch):
    """The blocks that need no graph are kept beside the model sizes, and read from there."""
    import json

    from infoopt.hessian import cost

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    options = dataclasses.replace(TINY_OPTIONS, memory_budget_gb=0.0, micro_batch_size=3)
    cost._graphless_blocks.cache_clear()
    found = predict(options, TINY)
    cache = tmp_path / "infoopt" / "graphless_blocks.json"
    ((key, blocks),) = json.loads(cache.read_text()).items()
    assert blocks == list(range(len(cost._size(key.split(" ", 1)[1]).numels)))
    cache.write_text(json.dumps({key: []}))  # as if no block were: every block call rebuilds
    cost._graphless_blocks.cache_clear()
    try:
        assert predict(options, TINY).builds > found.builds
    finally:
        cost._graphless_blocks.cache_clear()


def hessian_resources(workdir, *args: str) -> dict[str, dict[str, dict[str, str]]]:
    """rule -> job (its wildcards) -> resources, from a dry-run's plan."""
    result = snakemake(workdir, *SMOKE, "--dry-run", *args)
    out = result.stdout + result.stderr
    jobs: dict[str, dict[str, dict[str, str]]] = {}
    for block in out.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        if rule.startswith("hessian"):
            wildcards = re.search(r"wildcards: (.*)", block).group(1)
            resources = re.search(r"resources: (.*)", block).group(1)
            jobs.setdefault(rule, {})[wildcards] = dict(
                item.split("=", 1) for item in resources.split(", ")
            )
    return jobs


def test_workflow_jobs_ask_for_their_prediction(tmp_path, smoke_config):
    """The smoke run's Hessian jobs (on the CPU), whole and in shares, ask for what the
    cost model predicts; an assembly asks for little, and none asks for a GPU."""
    from infoopt.config import model_spec
    from infoopt.validate import validate_config

    config = validate_config(smoke_config, SCHEMA)
    section = {k: v for k, v in config["hessian"].items() if k not in ("shards", "device")}
    options = HessianOptions(**section)
    workdir = copy_workflow(tmp_path)
    (workdir / "shards.yaml").write_text("hessian:\n  shards: 2\n")
    experiment = "workflow/profiles/smoke/experiment.yaml"
    whole = hessian_resources(workdir)
    sharded = hessian_resources(workdir, "--configfile", experiment, "shards.yaml")
    assert whole["hessian"] and len(sharded["hessian_shard"]) == 2 * len(whole["hessian"])
    for jobs, shards in ((whole["hessian"], None), (sharded["hessian_shard"], 2)):
        for wildcards, resources in jobs.items():
            found = dict(item.split("=") for item in wildcards.split(", "))
            model = model_spec(config, found["dataset"], found["arch"])
            share = {}
            if shards:
                chosen = plan_shares(options, model, shards, "cpu")[int(found["shard"]) - 1]
                share = {"blocks": chosen.blocks, "estimates": chosen.estimates}
            prediction = predict(options, model, **share)
            assert int(resources["runtime"]) == prediction.minutes(1), wildcards
            assert int(resources["mem_mb"]) == prediction.mem_mb(1), wildcards
            assert resources["gpu"] == "0"
    for resources in sharded["hessian"].values():
        assert (resources["runtime"], resources["mem_mb"], resources["gpu"]) == ("10", "2000", "0")
