# Configuration checks and the helpers the rules share.
import functools
import math
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from infoopt.canonical import canonical_json
from infoopt.labels import progress_label
from infoopt.config import (
    RUN_DIR,
    ConfigError,
    Run,
    all_runs,
    experiment_runs,
    init_spec,
    model_spec,
    run_spec,
)
from infoopt.data import DATASETS
from infoopt.hessian.cost import predict
from infoopt.hessian.options import HessianOptions
from infoopt.hessian.shares import plan_shares
from infoopt.stored_runs import earlier_same_run
from infoopt.validate import validate_config

# A job's own Snakemake (a cluster job parses the workflow again) resolves the configuration
# the main process checked, without the checks that build models and optimizers: seconds each.
try:
    _validated = validate_config(
        config,
        Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
        checks=workflow.is_main_process,
    )
except ConfigError as error:
    # One line that names the key, not a traceback: the configuration is the user's to fix.
    sys.exit(f"invalid configuration: {error}")
config.clear()
config.update(_validated)

# Where each data set still to be downloaded comes from, for the dry run to show.
for _dataset in sorted({exp["dataset"] for exp in config["experiments"].values()}):
    _url = config["datasets"].get(_dataset, {}).get("url")
    if (
        not DATASETS[_dataset].bundled
        and not Path(f"resources/raw/{_dataset}").exists()
    ):
        for _file in DATASETS[_dataset].file_urls(_url):
            print(f"{_dataset}: to download from {_file}", file=sys.stderr)

# Every spec reaches a rule's params as canonical JSON (sorted keys, normalised numbers), so an
# equivalent configuration, however written or layered, plans nothing new.

# Rules run the package from this checkout, in whatever environment runs the job
# (a venv, a conda env made by --sdm conda, a cluster node).
SOURCE = Path(workflow.basedir) / "src"
shell.prefix(f"export PYTHONPATH={SOURCE}" + "${{PYTHONPATH:+:$PYTHONPATH}}; ")

# Tables and figures: name -> {"experiment": the experiment it belongs to, "notebook": file
# stem under notebooks/, "inputs", "outputs", "parameters"}; each stage's .smk adds its entries
# and notebooks.smk makes a rule of each, and a target `study_<experiment>` of each experiment's.
# Optional "report": {"category": "paper" | "extension" | "ablation" | "provenance" | "study",
# "caption": "workflow/report/<file>.rst" (from the repository root), "subcategory": str
# (optional), "outputs": [output names] (optional; default all)} puts those outputs into
# `snakemake --report`, under the category's heading, with the caption.
NOTEBOOKS = {}

PROGRESS = [progress_label(p) for p in config["training"]["checkpoints"]]


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    arch="[A-Za-z0-9_-]+",
    optimizer="[A-Za-z0-9_-]+",
    experiment="[A-Za-z0-9_-]+",
    seed=r"\d+",
    progress=r"\d\.\d\d",
    shard=r"\d+",


def run_of(wildcards):
    return Run(
        wildcards.dataset, wildcards.arch, wildcards.optimizer, int(wildcards.seed)
    )


def earlier_same_record(wildcards):
    """The run.json of the run this one is under another optimizer name, if that one comes
    first (infoopt.stored_runs.earlier_same_run): this one is trained after it."""
    same = earlier_same_run(config, run_of(wildcards))
    return [] if same is None else f"{same.directory}/run.json"


def run_files(experiment, name):
    """A per-run file (e.g. run.json) of every run of ``experiment``."""
    return [f"{run.directory}/{name}" for run in experiment_runs(config, experiment)]


def download_source(wildcards):
    """Command-line options naming the archive to fetch (the registry's default unless configured)."""
    settings = config["datasets"].get(wildcards.dataset, {})
    options = [f"--{key} {settings[key]}" for key in ("url", "md5") if key in settings]
    if "classes" in settings:
        options.append(f"--image-folder {shlex.quote(canonical_json(settings))}")
    return " ".join(options)


def raw_input(wildcards):
    """The download a dataset is prepared from; nothing for bundled datasets."""
    if DATASETS[wildcards.dataset].url is None:
        return []
    return f"resources/raw/{wildcards.dataset}"


def train_minutes(wildcards, attempt):
    """Cluster time limit of a training job, from its epochs (assumes >= 2,000 images/s) and retries."""
    spec = run_spec(config, run_of(wildcards))
    images = spec["training"]["epochs"] * DATASETS[wildcards.dataset].train_size
    return attempt * (10 + math.ceil(1.5 * images / 2000 / 60))


def hessian_progress(experiment):
    """The checkpoints of ``experiment`` whose Hessian is measured."""
    which = config["experiments"][experiment]["hessian"]
    return {"all": PROGRESS, "final": PROGRESS[-1:], "none": []}[which]


def hessian_files(experiment):
    return [
        f"{run.directory}/hessian/{progress}.parquet"
        for run in experiment_runs(config, experiment)
        for progress in hessian_progress(experiment)
    ]


# Keys of the config's `hessian` section that say how its work is done, not what it measures.
HESSIAN_EXECUTION = ("shards", "device")


def hessian_options():
    """The config's `hessian` section but for how the work is done, which changes no number."""
    return {k: v for k, v in config["hessian"].items() if k not in HESSIAN_EXECUTION}


def hessian_spec(wildcards):
    """The options of `infoopt hessian`, as canonical JSON."""
    return canonical_json(hessian_options())


def hessian_assembles(wildcards):
    """Whether a Hessian job only assembles the shares of a sharded checkpoint."""
    return "shard" not in wildcards.keys() and config["hessian"]["shards"] > 1


def hessian_gpus(wildcards):
    """A GPU for each Hessian job on `hessian.device: cuda`, but for an assembly of shares."""
    return int(
        config["hessian"]["device"] == "cuda" and not hessian_assembles(wildcards)
    )


def hessian_device(wildcards):
    """`infoopt hessian --device`: the CPU, or on `hessian.device: cuda` a free GPU (the CPU
    where there is none)."""
    return "cpu" if config["hessian"]["device"] == "cpu" else "auto"


@functools.cache
def _hessian_plan(dataset, arch):
    return plan_shares(
        HessianOptions(**hessian_options()),
        model_spec(config, dataset, arch),
        config["hessian"]["shards"],
        config["hessian"]["device"],
    )


def hessian_share(wildcards):
    """The blocks and estimates a share computes (infoopt.hessian.shares)."""
    plan = _hessian_plan(wildcards.dataset, wildcards.arch)
    return plan[int(wildcards.shard) - 1]


def hessian_share_blocks(wildcards):
    return ",".join(map(str, hessian_share(wildcards).blocks))


def hessian_share_estimates(wildcards):
    return ",".join(hessian_share(wildcards).estimates)


def hessian_prediction(wildcards):
    """What infoopt.hessian.cost predicts for a Hessian job (or share): its run's model,
    the config's options, on `hessian.device`."""
    share = {}
    if "shard" in wildcards.keys():
        found = hessian_share(wildcards)
        share = {"blocks": found.blocks, "estimates": found.estimates}
    return predict(
        HessianOptions(**hessian_options()),
        model_spec(config, wildcards.dataset, wildcards.arch),
        device_kind=config["hessian"]["device"],
        **share,
    )


def hessian_minutes(wildcards, attempt):
    """Time limit of a Hessian job, from its prediction (10 min + 1.5x, times the attempt;
    Prediction.minutes); 10 minutes a try for an assembly of shares."""
    if hessian_assembles(wildcards):
        return 10 * attempt
    return hessian_prediction(wildcards).minutes(attempt)


def hessian_mem_mb(wildcards, attempt):
    """Memory of a Hessian job, from its prediction (1,000 MB + 1.25x, times the attempt;
    Prediction.mem_mb); 2,000 MB a try for an assembly of shares."""
    if hessian_assembles(wildcards):
        return 2000 * attempt
    return hessian_prediction(wildcards).mem_mb(attempt)


def hessian_inputs(wildcards):
    """A checkpoint's table is measured from its checkpoint and data, or assembled from the
    tables of its shares."""
    if hessian_assembles(wildcards):
        directory = f"{run_of(wildcards).directory}/hessian/{wildcards.progress}"
        shards = range(1, config["hessian"]["shards"] + 1)
        return {"shares": [f"{directory}.shard{i}.parquet" for i in shards]}
    return {
        "checkpoint": f"{run_of(wildcards).directory}/ckpt/{wildcards.progress}.pt",
        "data": f"resources/data/{wildcards.dataset}.npz",
    }


def hessian_keep(wildcards):
    """Where a Hessian job keeps a copy of each part's stored rows: beside the checkpoint's
    table, whatever the split, so that the store counts the parts in use."""
    return f"{run_of(wildcards).directory}/hessian/{wildcards.progress}.parts"


def hessian_arguments(wildcards):
    """`infoopt hessian`'s arguments but --out and --threads: those of a measurement, or of an
    assembly (which imports no torch, so --threads changes nothing there). A function of the
    wildcards alone: Snakemake records (and compares, to rerun a job) only such params.
    """
    inputs = hessian_inputs(wildcards)
    if hessian_assembles(wildcards):
        return "--assemble " + " ".join(
            shlex.quote(share) for share in inputs["shares"]
        )
    return (
        f"{shlex.quote(inputs['checkpoint'])} --data {shlex.quote(inputs['data'])}"
        f" --spec {shlex.quote(hessian_spec(wildcards))} --device {hessian_device(wildcards)}"
        f" --keep {shlex.quote(hessian_keep(wildcards))}"
    )
