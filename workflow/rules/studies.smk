# Every experiment's Tables 1–5, figures, correlation study and provenance table, and with a
# hyper-parameter grid its generalization study (entries of NOTEBOOKS), but the Lion ablation's,
# which has its own (lion.smk). The paper experiment's keep the paper's names (table1,
# fig_entropy_gap, ...) and paths (results/tables/, results/figures/); any other experiment's,
# a study's, are named <experiment>_table1, ..., live under results/studies/<experiment>/ and
# have a heading of their own in the report. The paper experiment also gets the comparison with
# the paper's numbers.

PAPER = "paper"
# The paper's tables: number -> (metric, summary table, decimals in Markdown).
PAPER_TABLES = {
    1: ("test_accuracy", "training", 2),
    2: ("positive_block_ratio", "hessian", 4),
    3: ("abs_trace_sum", "hessian", 4),
    4: ("entropy_gap", "hessian", 2),
    5: ("entropy_gap_deviation", "hessian", 2),
}
# Tables in the same format of the rival explanations' metrics: target -> (title, metric,
# decimals).
RIVAL_TABLES = {
    "table_block_heterogeneity": (
        "Block heterogeneity (Zhang et al. 2024)",
        "block_heterogeneity",
        3,
    ),
    "table_gradient_heterogeneity": (
        "Gradient heterogeneity (Tomihari & Sato 2025)",
        "gradient_heterogeneity",
        3,
    ),
}
# Figure of one metric against training progress -> the summary table that holds the metric.
PROGRESS_FIGURES = {
    "test_accuracy": "training",
    "positive_block_ratio": "hessian",
    "abs_trace_sum": "hessian",
    "entropy_gap": "hessian",
    "entropy_gap_deviation": "hessian",
    "top_eigenvalue": "hessian",
    "hessian_trace": "hessian",
    "block_heterogeneity": "hessian",
    "gradient_heterogeneity": "hessian",
}
# Where the paper experiment's outputs sit in the report: group -> (category, subcategory).
# A study's sit under its own heading (category "study"), a subcategory per group.
REPORT_GROUPS = {
    "tables": ("paper", None),
    "training progress": ("extension", "training progress"),
    "correlation": ("extension", "correlation"),
    "generalization": ("extension", "generalization"),
    "provenance": ("provenance", None),
}


def study_entries(experiment):
    """The NOTEBOOKS entries of ``experiment``'s tables, figures, correlation study and
    provenance (see the top of this file); with a `grid`, its generalization study in place of
    the figures drawn per optimizer; with `hessian: none`, those that need no Hessian.
    """
    paper = experiment == PAPER
    root = "results" if paper else f"results/studies/{experiment}"
    summary = f"results/summary/{experiment}"
    summaries = (
        ["training", "hessian"] if hessian_progress(experiment) else ["training"]
    )
    # The paper's values (CIFAR-10) are drawn on the paper experiment's figures only.
    markers = {"paper_markers": paper}
    # A grid's points are optimizers of their own: the figures with a colour or a box per
    # optimizer would have one per point, so a grid experiment gets its study instead.
    grid = config["experiments"][experiment].get("grid")
    per_optimizer_figures = grid is None

    def tables(stem):
        return {
            "csv": f"{root}/tables/{stem}.csv",
            "markdown": f"{root}/tables/{stem}.md",
        }

    def figures(stem):
        return {
            "pdf": f"{root}/figures/{stem}.pdf",
            "png": f"{root}/figures/{stem}.png",
        }

    def report(group, caption, outputs):
        category, subcategory = REPORT_GROUPS[group] if paper else ("study", group)
        return {
            "category": category,
            "subcategory": subcategory,
            "caption": f"workflow/report/{caption}.rst",
            "outputs": outputs,
        }

    entries = {
        f"table{number}": {
            "notebook": "paper_table",
            "inputs": {"summary": f"{summary}/{table}.parquet"},
            "outputs": tables(f"table{number}"),
            "parameters": {"table": number, "metric": metric, "digits": digits},
            "report": report("tables", "paper_table", ["csv"]),
        }
        for number, (metric, table, digits) in PAPER_TABLES.items()
        if table in summaries
    }
    entries |= {
        name: {
            "notebook": "paper_table",
            "inputs": {"summary": f"{summary}/hessian.parquet"},
            "outputs": tables(name),
            "parameters": {"table": title, "metric": metric, "digits": digits},
            "report": report("tables", "rival_table", ["csv"]),
        }
        for name, (title, metric, digits) in RIVAL_TABLES.items()
        if "hessian" in summaries
    }
    entries |= {
        f"fig_{metric}": {
            "notebook": "fig_progress",
            "inputs": {"summary": f"{summary}/{table}.parquet"},
            "outputs": figures(metric),
            "parameters": {"metric": metric} | markers,
            "report": report("training progress", "fig_progress", ["png"]),
        }
        for metric, table in PROGRESS_FIGURES.items()
        if table in summaries and per_optimizer_figures
    }
    if "hessian" in summaries:
        points = {
            "training": f"{summary}/training.parquet",
            "hessian": f"{summary}/hessian.parquet",
        }
        if per_optimizer_figures:
            entries["fig_block_gaps"] = {
                "notebook": "fig_block_gaps",
                "inputs": {"blocks": f"{summary}/hessian_blocks.parquet"},
                "outputs": figures("block_gaps"),
                "parameters": markers,
                "report": report("training progress", "fig_block_gaps", ["png"]),
            }
            entries["fig_accuracy_vs_metrics"] = {
                "notebook": "fig_accuracy",
                "inputs": points,
                "outputs": figures("accuracy_vs_metrics"),
                "parameters": markers,
                "report": report("correlation", "fig_accuracy", ["png"]),
            }
        entries["correlation"] = {
            "notebook": "correlation",
            "inputs": points,
            "outputs": tables("correlation"),
            "parameters": {"n_boot": 2000, "confidence": 0.95, "seed": 0},
            "report": report("correlation", "correlation", ["csv"]),
        }
        entries["fig_correlation"] = {
            "notebook": "fig_correlation",
            "inputs": {"table": tables("correlation")["csv"]},
            "outputs": figures("correlation"),
            "parameters": {},
            "report": report("correlation", "fig_correlation", ["png"]),
        }
        if grid is not None:
            entries["generalization"] = {
                "notebook": "generalization",
                "inputs": points,
                "outputs": tables("generalization")
                | {"runs_csv": f"{root}/tables/generalization_runs.csv"}
                | figures("generalization"),
                "parameters": {
                    "grid": canonical_json(grid),
                    "n_boot": 2000,
                    "confidence": 0.95,
                    "seed": 0,
                },
                "report": report(
                    "generalization", "generalization", ["csv", "runs_csv", "png"]
                ),
            }
    entries["provenance"] = {
        "notebook": "provenance",
        "inputs": {"runs": f"{summary}/runs.parquet"},
        "outputs": tables("provenance"),
        "parameters": {},
        "report": report("provenance", "provenance", ["csv", "markdown"]),
    }
    return {
        name if paper else f"{experiment}_{name}": entry | {"experiment": experiment}
        for name, entry in entries.items()
    }


# The paper experiment first: its targets keep their names, a study's must not take them.
for experiment in sorted(config["experiments"], key=lambda name: name != PAPER):
    if experiment != ABLATION:
        entries = study_entries(experiment)
        taken = sorted(entries.keys() & NOTEBOOKS.keys())
        if taken:
            raise WorkflowError(
                f"config key experiments.{experiment}: its targets {taken} are another"
                " experiment's; rename it"
            )
        NOTEBOOKS.update(entries)

if PAPER in config["experiments"] and hessian_progress(PAPER):
    NOTEBOOKS["paper_comparison"] = {
        "experiment": PAPER,
        "notebook": "paper_comparison",
        "inputs": {
            "tables": [NOTEBOOKS[f"table{n}"]["outputs"]["csv"] for n in PAPER_TABLES],
            # The claims' verdicts pair runs by seed: they read the per-seed values.
            "training": f"results/summary/{PAPER}/training.parquet",
            "hessian": f"results/summary/{PAPER}/hessian.parquet",
        },
        "outputs": {
            "comparison": "results/tables/paper_comparison.csv",
            "claims": "results/tables/paper_claims.csv",
            "markdown": "results/tables/paper_claims.md",
            "pdf": "results/figures/paper_claims.pdf",
            "png": "results/figures/paper_claims.png",
        },
        "parameters": {},
        "report": {
            "category": "paper",
            "caption": "workflow/report/paper_comparison.rst",
            "outputs": ["comparison", "claims", "png"],
        },
    }
    # The paper's explanation beside its rivals, on the same runs; Ψ from the first grid
    # study's generalization table, where the configuration has one.
    grid_studies = sorted(
        name
        for name in NOTEBOOKS
        if name == "generalization" or name.endswith("_generalization")
    )
    NOTEBOOKS["explanations"] = {
        "experiment": PAPER,
        "notebook": "explanations",
        "inputs": {
            "training": f"results/summary/{PAPER}/training.parquet",
            "hessian": f"results/summary/{PAPER}/hessian.parquet",
            "generalization": [
                NOTEBOOKS[name]["outputs"]["csv"] for name in grid_studies[:1]
            ],
        },
        "outputs": {
            "csv": "results/tables/explanations.csv",
            "markdown": "results/tables/explanations.md",
            "pdf": "results/figures/explanations.pdf",
            "png": "results/figures/explanations.png",
        },
        "parameters": {},
        "report": {
            "category": "paper",
            "caption": "workflow/report/explanations.rst",
            "outputs": ["csv", "png"],
        },
    }
