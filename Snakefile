# Replication of Tan & Huang (2025), "Information-Theoretic Perspectives on Optimizers".
# `snakemake --cores all` runs everything; `snakemake table1` (or any file path) runs one target,
# `snakemake study_<experiment>` all of one experiment's tables and figures.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/hessian.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/lion.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/notebooks.smk"


rule all:
    default_target: True
    input:
        [path for files in NOTEBOOKS.values() for path in files["outputs"].values()],
