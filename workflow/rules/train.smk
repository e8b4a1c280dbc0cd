# Training: one shared initial state per (dataset, arch, seed), then one job per run.
from infoopt.sweep import selection_file


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
        spec=lambda wc: canonical_json(
            init_spec(config, wc.dataset, wc.arch, int(wc.seed))
        ),
    shell:
        "python -m infoopt init --spec {params.spec:q} --out {output} > {log} 2>&1"


rule train:
    input:
        init="results/init/{dataset}/{arch}/seed{seed}.pt",
        data="resources/data/{dataset}.npz",
        # The lr chosen by a sweep (lion.smk), for runs of an experiment with an lr_sweep.
        hparams=lambda wc: selection_file(config, run_of(wc)) or [],
        # The same run under another optimizer name: trained first, then this one is restored.
        same_run=earlier_same_record,
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
        spec=lambda wc: canonical_json(run_spec(config, run_of(wc))),
        out_dir=RUN_DIR,
        hparams_from=lambda wc, input: (
            f"--hparams-from {input.hparams}" if input.hparams else ""
        ),
    shell:
        "python -m infoopt train --spec {params.spec:q} --init {input.init} --data {input.data}"
        " --out-dir {params.out_dir} {params.hparams_from} --threads {threads} >> {log} 2>&1"
