# Hessian metrics: one job per checkpoint (independent, so a cluster runs them in parallel), or,
# with `hessian.shards: N` > 1, N jobs per checkpoint, each computing a share of its parts (block
# rows and the global estimates, planned by infoopt.hessian.shares from the cost model), and a
# job without torch that assembles the table from them. Each computing job asks for the time
# and memory that infoopt.hessian.cost predicts for it, and for a GPU only on `hessian.device: cuda`.


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
        blocks=hessian_share_blocks,
        estimates=hessian_share_estimates,
        device=hessian_device,
        keep=hessian_keep,
    shell:
        "python -m infoopt hessian {input.checkpoint} --data {input.data} --out {output}"
        " --spec {params.spec:q} --blocks={params.blocks} --estimates={params.estimates}"
        " --keep {params.keep:q} --device {params.device} --threads {threads} > {log} 2>&1"


rule hessian:
    input:
        unpack(hessian_inputs),
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
        arguments=hessian_arguments,
    shell:
        "python -m infoopt hessian {params.arguments} --out {output}"
        " --threads {threads} > {log} 2>&1"
