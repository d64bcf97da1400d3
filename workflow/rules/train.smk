# Training: the pose GAN (train_generator), then the face GAN on its frozen output (train_face).
# Each run folder keeps checkpoint.pt, run.json, losses.csv and samples/. The checkpoint is not
# an output, so a job that is killed or fails keeps it and its rerun resumes from it (delete it
# to start over). `python -m pipeline.gan.launch` starts one process per GPU the job has (torchrun).


# This family's helpers; what several families need is in common.smk.
include: "helpers/train.smk"


rule train_generator:
    input:
        unpack(train_inputs),
        plates=plate_inputs,
        init_global=global_generator_input,
        code=stage_code("train", runner="pipeline.gan.launch"),
        lost=lambda wildcards: lost_inputs(f"results/models/{wildcards.subject}/generator.pt"),
    output:
        "results/models/{subject}/generator.pt",
    params:
        run_dir="results/models/{subject}",
        clips=train_clip_flags,
        qc=train_qc_flags,
        plates=train_plate_flags,
        cpu_processes=config["train"]["cpu_processes"],
        options=train_flags("generator"),
        init_global=init_global_flags,
    threads: train_threads
    resources:
        **train_resources("train_generator"),
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/train/{subject}.log",
    benchmark:
        "results/benchmarks/train/{subject}.tsv"
    shell:
        "python -m pipeline.gan.launch --gpus {resources.gpu} --cpu-procs {params.cpu_processes} -- python -m pipeline.cli train"
        " {params.clips} {params.qc}{params.plates} --model-out {output:q} {params.options} {params.init_global}"
        " -- {params.run_dir:q} > {log} 2>&1"


# The reference schedule's first phase (config train: global_phase): a global generator at half the
# resolution with twice the filters, cached in its own folder so that changing the local or face phase
# does not retrain it. Its generator.pt starts the local enhancer of train_generator.
use rule train_generator as train_global with:
    input:
        unpack(train_inputs),
        code=stage_code("train", runner="pipeline.gan.launch"),
        lost=lambda wildcards: lost_inputs(f"results/models/{wildcards.subject}/global/generator.pt"),
    output:
        "results/models/{subject}/global/generator.pt",
    params:
        run_dir="results/models/{subject}/global",
        clips=train_clip_flags,
        qc=train_qc_flags,
        cpu_processes=config["train"]["cpu_processes"],
        options=train_flags("global"),
        init_global="",
        plates="",
    resources:
        **train_resources("train_global"),
    log:
        "results/logs/train_global/{subject}.log",
    benchmark:
        "results/benchmarks/train_global/{subject}.tsv"


rule train_face:
    input:
        unpack(train_inputs),
        generator="results/models/{subject}/generator.pt",
        code=stage_code("train-face", runner="pipeline.gan.launch"),
        lost=lambda wildcards: lost_inputs(f"results/models/{wildcards.subject}/face.pt"),
    output:
        "results/models/{subject}/face.pt",
    params:
        run_dir="results/models/{subject}/face",
        clips=train_clip_flags,
        qc=train_qc_flags,
        cpu_processes=config["train"]["cpu_processes"],
        options=train_flags("face"),
    threads: train_threads
    resources:
        **train_resources("train_face"),
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/train_face/{subject}.log",
    benchmark:
        "results/benchmarks/train_face/{subject}.tsv"
    shell:
        "python -m pipeline.gan.launch --gpus {resources.gpu} --cpu-procs {params.cpu_processes} -- python -m pipeline.cli train-face"
        " {params.clips} {params.qc} --model-out {output:q} --generator {input.generator:q} {params.options}"
        " -- {params.run_dir:q} > {log} 2>&1"
