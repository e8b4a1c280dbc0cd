# Tables and figures: one papermill-executed notebook each, a rule named after it.
# Each notebook's parameters are its named inputs and outputs; the executed notebook is kept.

NOTEBOOKS = {
    "table1": {
        "inputs": {"training": "results/summary/paper/training.parquet"},
        "outputs": {
            "csv": "results/tables/table1.csv",
            "markdown": "results/tables/table1.md",
        },
    },
}


def papermill_parameters(named_files):
    return " ".join(
        f"-p {name} {path}"
        for name, path in named_files.items()
        if name not in ("notebook", "executed")
    )


for notebook, files in NOTEBOOKS.items():

    rule:
        name:
            notebook
        input:
            **files["inputs"],
            notebook=f"notebooks/{notebook}.ipynb",
        output:
            **files["outputs"],
            executed=f"results/notebooks/{notebook}.ipynb",
        log:
            f"logs/notebooks/{notebook}.log",
        conda:
            "../../envs/notebooks.yaml"
        params:
            parameters=lambda wc, input, output: papermill_parameters(
                dict(input.items()) | dict(output.items())
            ),
        shell:
            "python -m papermill {input.notebook} {output.executed} {params.parameters}"
            " --no-progress-bar --cwd . > {log} 2>&1"
