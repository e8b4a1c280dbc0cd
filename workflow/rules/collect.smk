# Per-run outputs into the tidy tables under results/summary/{experiment}/.


rule collect_training:
    input:
        lambda wc: run_files(wc.experiment, "run.json"),
    output:
        runs="results/summary/{experiment}/runs.parquet",
        training="results/summary/{experiment}/training.parquet",
        history="results/summary/{experiment}/history.parquet",
    log:
        "logs/collect/{experiment}/training.log",
    benchmark:
        "logs/benchmarks/collect/{experiment}/training.tsv"
    conda:
        "../../envs/notebooks.yaml"
    params:
        run_dirs=lambda wc, input: [str(Path(path).parent) for path in input],
    shell:
        "python -m infoopt collect --runs {params.run_dirs}"
        " --out-dir results/summary/{wildcards.experiment} > {log} 2>&1"


rule collect_hessian:
    input:
        lambda wc: hessian_files(wc.experiment),
    output:
        hessian="results/summary/{experiment}/hessian.parquet",
        blocks="results/summary/{experiment}/hessian_blocks.parquet",
    log:
        "logs/collect/{experiment}/hessian.log",
    benchmark:
        "logs/benchmarks/collect/{experiment}/hessian.tsv"
    conda:
        "../../envs/notebooks.yaml"
    shell:
        "python -m infoopt collect --hessian {input}"
        " --out-dir results/summary/{wildcards.experiment} > {log} 2>&1"
