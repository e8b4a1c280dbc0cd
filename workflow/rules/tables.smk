# The paper's tables (and their comparison with the paper), as entries of NOTEBOOKS.

PAPER_TABLES = {
    1: ("test_accuracy", "training", 2),
    2: ("positive_block_ratio", "hessian", 4),
    3: ("abs_trace_sum", "hessian", 4),
    4: ("entropy_gap", "hessian", 2),
    5: ("entropy_gap_deviation", "hessian", 2),
}

NOTEBOOKS.update(
    {
        f"table{number}": {
            "notebook": "paper_table",
            "inputs": {"summary": f"results/summary/paper/{summary}.parquet"},
            "outputs": {
                "csv": f"results/tables/table{number}.csv",
                "markdown": f"results/tables/table{number}.md",
            },
            "parameters": {"table": number, "metric": metric, "digits": digits},
            "report": {
                "category": "paper",
                "caption": "workflow/report/paper_table.rst",
                "outputs": ["csv"],
            },
        }
        for number, (metric, summary, digits) in PAPER_TABLES.items()
    }
)
NOTEBOOKS["paper_comparison"] = {
    "notebook": "paper_comparison",
    "inputs": {
        "tables": [f"results/tables/table{n}.csv" for n in PAPER_TABLES],
        # The claims' verdicts pair runs by seed: they read the per-seed values.
        "training": "results/summary/paper/training.parquet",
        "hessian": "results/summary/paper/hessian.parquet",
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
