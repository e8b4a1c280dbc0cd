# Hessian metrics: one job per checkpoint (independent, so a cluster runs them in parallel).


rule hessian:
    input:
        checkpoint=f"{RUN_DIR}/ckpt/{{progress}}.pt",
        data="resources/data/{dataset}.npz",
    output:
        f"{RUN_DIR}/hessian/{{progress}}.parquet",
    log:
        f"logs/hessian/{{dataset}}/{{arch}}/{{optimizer}}/seed{{seed}}/{{progress}}.log",
    benchmark:
        f"logs/benchmarks/hessian/{{dataset}}/{{arch}}/{{optimizer}}/seed{{seed}}/{{progress}}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        gpu=1,
        runtime=lambda wc, attempt: attempt * 60,
        mem_mb=lambda wc, attempt: 16000 * attempt,
    params:
        spec=hessian_spec,
    shell:
        "python -m infoopt hessian {input.checkpoint} --data {input.data} --out {output}"
        " --spec {params.spec:q} --threads {threads} > {log} 2>&1"
