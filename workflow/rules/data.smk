# Datasets: download an archive once (checksum-verified), convert it once to arrays.


rule download:
    output:
        directory("resources/raw/{dataset}"),
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "logs/benchmarks/download/{dataset}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        source=download_source,
    shell:
        "python -m infoopt prepare {wildcards.dataset} --download-only --raw-dir {output} {params.source}"
        " > {log} 2>&1"


rule prepare:
    input:
        raw=raw_input,
    output:
        "resources/data/{dataset}.npz",
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "logs/benchmarks/prepare/{dataset}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        source=download_source,
    shell:
        "python -m infoopt prepare {wildcards.dataset} --raw-dir resources/raw/{wildcards.dataset}"
        " --out {output} {params.source} > {log} 2>&1"
