# Training: one shared initial state per (dataset, arch, seed), then one job per run.


rule init:
    output:
        "results/init/{dataset}/{arch}/seed{seed}.pt",
    log:
        "logs/init/{dataset}/{arch}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/init/{dataset}/{arch}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        spec=lambda wc: json.dumps(init_spec(config, wc.dataset, wc.arch, int(wc.seed))),
    shell:
        "python -m infoopt init --spec {params.spec:q} --out {output} > {log} 2>&1"


rule train:
    input:
        init="results/init/{dataset}/{arch}/seed{seed}.pt",
        data="resources/data/{dataset}.npz",
    output:
        checkpoints=expand(
            f"{RUN_DIR}/ckpt/{{progress}}.pt", progress=PROGRESS, allow_missing=True
        ),
        history=f"{RUN_DIR}/history.csv",
        record=f"{RUN_DIR}/run.json",
    log:
        "logs/train/{dataset}/{arch}/{optimizer}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/train/{dataset}/{arch}/{optimizer}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        gpu=1,
        runtime=train_minutes,
        mem_mb=lambda wc, attempt: 8000 * attempt,
    params:
        spec=lambda wc: json.dumps(run_spec(config, run_of(wc))),
        out_dir=RUN_DIR,
    shell:
        "python -m infoopt train --spec {params.spec:q} --init {input.init} --data {input.data}"
        " --out-dir {params.out_dir} --threads {threads} >> {log} 2>&1"
