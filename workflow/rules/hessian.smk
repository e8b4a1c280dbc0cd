# Hessian metrics: one job per checkpoint (independent, so a cluster runs them in parallel), or,
# with `hessian.shards: N` > 1, N jobs per checkpoint (each a share of its blocks, one of them also
# the traces and the top eigenvalue; infoopt.hessian.metrics.shard_plan) and a cheap merge job.
# Each computing job asks for the time and memory that infoopt.hessian.cost predicts for it.


rule hessian_shard:
    input:
        checkpoint=f"{RUN_DIR}/ckpt/{{progress}}.pt",
        data="resources/data/{dataset}.npz",
    output:
        temp(f"{RUN_DIR}/hessian/{{progress}}.shard{{shard}}.parquet"),
    log:
        f"logs/hessian/{{dataset}}/{{arch}}/{{optimizer}}/seed{{seed}}/{{progress}}.shard{{shard}}.log",
    benchmark:
        f"logs/benchmarks/hessian/{{dataset}}/{{arch}}/{{optimizer}}/seed{{seed}}/{{progress}}.shard{{shard}}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        gpu=hessian_gpus,
        runtime=hessian_minutes,
        mem_mb=hessian_mem_mb,
    params:
        spec=hessian_spec,
        shards=config["hessian"]["shards"],
        device=hessian_device,
    shell:
        "python -m infoopt hessian {input.checkpoint} --data {input.data} --out {output}"
        " --spec {params.spec:q} --shard {wildcards.shard}/{params.shards}"
        " --device {params.device} --threads {threads} > {log} 2>&1"


rule hessian:
    input:
        checkpoint=f"{RUN_DIR}/ckpt/{{progress}}.pt",
        data="resources/data/{dataset}.npz",
        shards=hessian_shards,
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
        gpu=hessian_gpus,
        runtime=hessian_minutes,
        mem_mb=hessian_mem_mb,
    params:
        spec=hessian_spec,
        device=hessian_device,
        merge=lambda wc, input: (
            f"--merge {' '.join(input.shards)}" if input.shards else ""
        ),
    shell:
        "python -m infoopt hessian {input.checkpoint} --data {input.data} --out {output}"
        " --spec {params.spec:q} {params.merge} --device {params.device}"
        " --threads {threads} > {log} 2>&1"
