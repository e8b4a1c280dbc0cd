# One rule per entry of NOTEBOOKS (filled by studies.smk and the other stages), named after it,
# and a target rule `study_<experiment>` per experiment. Included last. A notebook's parameters
# are the entry's named inputs and outputs (a list of files becomes one space-separated string)
# plus its fixed `parameters`, which are also the rule's params (for the captions, with the
# entry's experiment); the executed notebook is kept under results/notebooks/. An entry's
# optional "report" key flags outputs for `snakemake --report` (see common.smk).
import shlex

# The "report" key's categories -> their headings in the report ({experiment}: the entry's).
REPORT_CATEGORIES = {
    "paper": "Paper tables",
    "extension": "Extension",
    "ablation": "Ablation",
    "provenance": "Provenance",
    "study": "Study {experiment}",
}


def papermill_parameters(entry, input, output):
    """`-p name value` for the notebook's files and fixed parameters."""
    values = {name: input[name] for name in entry["inputs"]}
    values |= {name: output[name] for name in entry["outputs"]}
    values |= entry["parameters"]
    return " ".join(
        f"-p {name} {shlex.quote(' '.join(value) if isinstance(value, list) else str(value))}"
        for name, value in values.items()
    )


def notebook_outputs(name, entry):
    """The entry's outputs, those its "report" key names flagged for the report."""
    outputs = dict(entry["outputs"])
    settings = entry.get("report")
    if settings is None:
        return outputs
    if settings["category"] not in REPORT_CATEGORIES:
        raise WorkflowError(
            f"NOTEBOOKS[{name!r}]: unknown report category {settings['category']!r};"
            f" valid: {', '.join(REPORT_CATEGORIES)}"
        )
    marked = settings.get("outputs", list(outputs))
    unknown = sorted(set(marked) - set(outputs))
    if unknown:
        raise WorkflowError(
            f"NOTEBOOKS[{name!r}]: report outputs {unknown} are not outputs;"
            f" valid: {', '.join(outputs)}"
        )
    for key in marked:
        outputs[key] = report(
            outputs[key],
            # Captions are named from the repository root; Snakemake resolves them from here.
            caption=f"../../{settings['caption']}",
            category=REPORT_CATEGORIES[settings["category"]].format(
                experiment=entry["experiment"]
            ),
            subcategory=settings.get("subcategory"),
            labels={"target": name, "file": Path(outputs[key]).name},
        )
    return outputs


for name, entry in NOTEBOOKS.items():

    rule:
        name:
            name
        input:
            **entry["inputs"],
            notebook=f"notebooks/{entry['notebook']}.ipynb",
        output:
            **notebook_outputs(name, entry),
            executed=f"results/notebooks/{name}.ipynb",
        log:
            f"logs/notebooks/{name}.log",
        benchmark:
            f"logs/benchmarks/notebooks/{name}.tsv"
        conda:
            "../../envs/notebooks.yaml"
        params:
            **entry["parameters"],
            parameters=lambda wc, input, output, entry=entry: papermill_parameters(
                entry, input, output
            ),
            experiment=entry["experiment"],
        shell:
            "python -m papermill {input.notebook} {output.executed} {params.parameters}"
            " --no-progress-bar --no-request-save-on-cell-execute --cwd . > {log} 2>&1"


for experiment in dict.fromkeys(entry["experiment"] for entry in NOTEBOOKS.values()):

    rule:
        name:
            f"study_{experiment}"
        input:
            [
                path
                for entry in NOTEBOOKS.values()
                if entry["experiment"] == experiment
                for path in entry["outputs"].values()
            ],
