# Figures, the correlation study and the provenance table (entries of NOTEBOOKS), with their
# captions and categories in the report (`snakemake --report`).


SUMMARY = "results/summary/paper"
FIGURES = "results/figures"
# Figure of one metric against training progress -> the summary table that holds the metric.
PROGRESS_FIGURES = {
    "test_accuracy": "training",
    "positive_block_ratio": "hessian",
    "abs_trace_sum": "hessian",
    "entropy_gap": "hessian",
    "entropy_gap_deviation": "hessian",
    "top_eigenvalue": "hessian",
    "hessian_trace": "hessian",
}
FIGURE_REPORT = {"category": "extension", "outputs": ["png"]}


def figure_files(name):
    return {"pdf": f"{FIGURES}/{name}.pdf", "png": f"{FIGURES}/{name}.png"}


NOTEBOOKS.update(
    {
        f"fig_{metric}": {
            "notebook": "fig_progress",
            "inputs": {"summary": f"{SUMMARY}/{summary}.parquet"},
            "outputs": figure_files(metric),
            "parameters": {"metric": metric},
            "report": FIGURE_REPORT
            | {
                "caption": "workflow/report/fig_progress.rst",
                "subcategory": "training progress",
            },
        }
        for metric, summary in PROGRESS_FIGURES.items()
    }
)
NOTEBOOKS["fig_block_gaps"] = {
    "notebook": "fig_block_gaps",
    "inputs": {"blocks": f"{SUMMARY}/hessian_blocks.parquet"},
    "outputs": figure_files("block_gaps"),
    "parameters": {},
    "report": FIGURE_REPORT
    | {
        "caption": "workflow/report/fig_block_gaps.rst",
        "subcategory": "training progress",
    },
}
NOTEBOOKS["fig_accuracy_vs_metrics"] = {
    "notebook": "fig_accuracy",
    "inputs": {
        "training": f"{SUMMARY}/training.parquet",
        "hessian": f"{SUMMARY}/hessian.parquet",
    },
    "outputs": figure_files("accuracy_vs_metrics"),
    "parameters": {},
    "report": FIGURE_REPORT
    | {"caption": "workflow/report/fig_accuracy.rst", "subcategory": "correlation"},
}
NOTEBOOKS["correlation"] = {
    "notebook": "correlation",
    "inputs": {
        "training": f"{SUMMARY}/training.parquet",
        "hessian": f"{SUMMARY}/hessian.parquet",
    },
    "outputs": {
        "csv": "results/tables/correlation.csv",
        "markdown": "results/tables/correlation.md",
    },
    "parameters": {"n_boot": 2000, "confidence": 0.95, "seed": 0},
    "report": {
        "category": "extension",
        "subcategory": "correlation",
        "caption": "workflow/report/correlation.rst",
        "outputs": ["csv"],
    },
}
NOTEBOOKS["fig_correlation"] = {
    "notebook": "fig_correlation",
    "inputs": {"table": "results/tables/correlation.csv"},
    "outputs": figure_files("correlation"),
    "parameters": {},
    "report": FIGURE_REPORT
    | {"caption": "workflow/report/fig_correlation.rst", "subcategory": "correlation"},
}
NOTEBOOKS["provenance"] = {
    "notebook": "provenance",
    "inputs": {"runs": f"{SUMMARY}/runs.parquet"},
    "outputs": {
        "csv": "results/tables/provenance.csv",
        "markdown": "results/tables/provenance.md",
    },
    "parameters": {},
    "report": {
        "category": "provenance",
        "caption": "workflow/report/provenance.rst",
        "outputs": ["csv", "markdown"],
    },
}
