# Learning-rate sweeps (any experiment's `lr_sweep`, see infoopt.sweep), and the Lion ablation's
# tables and figures (entries of NOTEBOOKS for the experiment `lion_ablation`).
from infoopt.sweep import (
    SELECTION,
    SWEEP_RUN,
    SweepRun,
    candidate_runs,
    selection_path,
    sweep_spec,
)


wildcard_constraints:
    lr=r"\d[0-9.e+-]*",


# A candidate run: `infoopt train` like every run, on the training set minus the held-out part.
rule sweep:
    input:
        init="results/init/{dataset}/{arch}/seed{seed}.pt",
        data="resources/data/{dataset}.npz",
    output:
        checkpoint=f"{SWEEP_RUN}/ckpt/1.00.pt",
        history=f"{SWEEP_RUN}/history.csv",
        record=f"{SWEEP_RUN}/run.json",
    log:
        "logs/sweep/{dataset}/{arch}/{optimizer}/lr{lr}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/sweep/{dataset}/{arch}/{optimizer}/lr{lr}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        gpu=1,
        runtime=train_minutes,
        mem_mb=lambda wc, attempt: 8000 * attempt,
    params:
        spec=lambda wc: canonical_json(
            sweep_spec(
                config,
                SweepRun(wc.dataset, wc.arch, wc.optimizer, wc.lr, int(wc.seed)),
            )
        ),
        out_dir=SWEEP_RUN,
    shell:
        "python -m infoopt train --spec {params.spec:q} --init {input.init} --data {input.data}"
        " --out-dir {params.out_dir} --threads {threads} >> {log} 2>&1"


# The selected lr of (dataset, arch, optimizer): an input of those runs' training jobs.
rule select_lr:
    input:
        lambda wc: [
            f"{run.directory}/run.json"
            for run in candidate_runs(config, wc.dataset, wc.arch, wc.optimizer)
        ],
    output:
        SELECTION,
    log:
        "logs/sweep/{dataset}/{arch}/{optimizer}/select.log",
    benchmark:
        "logs/benchmarks/sweep/{dataset}/{arch}/{optimizer}/select.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        run_dirs=lambda wc, input: [str(Path(path).parent) for path in input],
    shell:
        "python -m infoopt select {params.run_dirs} --out {output} > {log} 2>&1"


ABLATION = "lion_ablation"

# The report settings of the ablation's tables and figures (see NOTEBOOKS in common.smk).
ABLATION_REPORT = {
    "category": "ablation",
    "caption": "workflow/report/lion_ablation.rst",
}


if ABLATION in config["experiments"]:
    _ablation = config["experiments"][ABLATION]
    _summary = f"results/summary/{ABLATION}"
    _lions = [
        name
        for name in _ablation["optimizers"]
        if config["optimizers"][name].get("algorithm") == "lion"
    ]
    if not _lions:
        raise WorkflowError(
            f"config key experiments.{ABLATION}.optimizers: no optimizer has algorithm lion;"
            " the ablation compares every variant with Lion"
        )
    _order = {"optimizers": _ablation["optimizers"]}
    _tables = "results/tables/lion_{}"
    _figures = "results/figures/lion_{}"
    NOTEBOOKS["lion_accuracy"] = {
        "experiment": ABLATION,
        "notebook": "lion_accuracy",
        "inputs": {
            "training": f"{_summary}/training.parquet",
            "runs": f"{_summary}/runs.parquet",
        },
        "outputs": {
            "csv": _tables.format("accuracy.csv"),
            "markdown": _tables.format("accuracy.md"),
        },
        "parameters": _order,
        "report": ABLATION_REPORT | {"outputs": ["csv"]},
    }
    NOTEBOOKS["lion_paired"] = {
        "experiment": ABLATION,
        "notebook": "lion_paired",
        "inputs": {"training": f"{_summary}/training.parquet"},
        "outputs": {
            "csv": _tables.format("paired.csv"),
            "markdown": _tables.format("paired.md"),
        },
        "parameters": _order | {"reference": _lions[0]},
        "report": ABLATION_REPORT | {"outputs": ["csv"]},
    }
    NOTEBOOKS["lion_curves"] = {
        "experiment": ABLATION,
        "notebook": "lion_curves",
        "inputs": {"history": f"{_summary}/history.parquet"},
        "outputs": {
            "pdf": _figures.format("curves.pdf"),
            "png": _figures.format("curves.png"),
        },
        "parameters": _order,
        "report": ABLATION_REPORT | {"outputs": ["png"]},
    }
    _algorithms = {
        config["optimizers"][name].get("algorithm") for name in _ablation["optimizers"]
    }
    if "lion_tanh" in _algorithms:
        NOTEBOOKS["lion_kappa"] = {
            "experiment": ABLATION,
            "notebook": "lion_kappa",
            "inputs": {
                "training": f"{_summary}/training.parquet",
                "runs": f"{_summary}/runs.parquet",
            },
            "outputs": {
                "pdf": _figures.format("kappa.pdf"),
                "png": _figures.format("kappa.png"),
            },
            "parameters": _order | {"reference": _lions[0]},
            "report": ABLATION_REPORT | {"outputs": ["png"]},
        }
    if _ablation["hessian"] != "none":
        NOTEBOOKS["lion_hessian"] = {
            "experiment": ABLATION,
            "notebook": "lion_hessian",
            "inputs": {"hessian": f"{_summary}/hessian.parquet"},
            "outputs": {
                "csv": _tables.format("hessian.csv"),
                "markdown": _tables.format("hessian.md"),
                "pdf": _figures.format("hessian.pdf"),
                "png": _figures.format("hessian.png"),
            },
            "parameters": _order,
            "report": ABLATION_REPORT | {"outputs": ["csv", "png"]},
        }
    if "lr_sweep" in _ablation:
        NOTEBOOKS["lion_lr_sweep"] = {
            "experiment": ABLATION,
            "notebook": "lion_lr_sweep",
            "inputs": {
                "selections": [
                    selection_path(_ablation["dataset"], arch, optimizer)
                    for arch in _ablation["archs"]
                    for optimizer in _ablation["optimizers"]
                ]
            },
            "outputs": {
                "csv": _tables.format("lr_sweep.csv"),
                "markdown": _tables.format("lr_sweep.md"),
            },
            "parameters": _order,
            "report": ABLATION_REPORT | {"outputs": ["csv"]},
        }
