# After training: the frame-by-frame ablation model and the configured ablations (evaluate:
# ablations), transfer videos, the paper's evaluation on held-out frames, and their figures. Rules
# that run a generator ask for one GPU (none when train: gpus is 0), so with the local profile's
# gpu=1 they never share it with training or with each other.


# This family's helpers; what several families need is in common.smk.
include: "helpers/transfer.smk"


# The paper's frame-by-frame baseline: the same training (background plate included) without the
# previous-frame input, so the two rows differ in that alone, as in the paper. Trained only when
# config evaluate: rows lists frame_by_frame.
use rule train_generator as train_frame_by_frame with:
    input:  # from scratch: the global phase's generator takes the previous frame, this one does not
        unpack(train_inputs),
        plates=plate_inputs,
        code=stage_code("train", runner="pipeline.gan.launch"),
        lost=lambda wildcards: lost_inputs(f"results/models/{wildcards.subject}/frame_by_frame/generator.pt"),
    output:
        "results/models/{subject}/frame_by_frame/generator.pt",
    params:
        run_dir="results/models/{subject}/frame_by_frame",
        clips=train_clip_flags,
        qc=train_qc_flags,
        plates=train_plate_flags,
        options=train_flags("generator") + " --no-temporal --niter-fix-global 0",
        init_global="",
    resources:
        **train_resources("train_frame_by_frame"),
    log:
        "results/logs/train_frame_by_frame/{subject}.log",
    benchmark:
        "results/benchmarks/train_frame_by_frame/{subject}.tsv"


# config evaluate: ablations: the pose GAN again with some train: options changed (plates only if its
# background is plate), each an evaluation row and a loss curve. From scratch: a config with a global
# phase and ablations is refused at start (an ablation would need its own global phase).
use rule train_generator as train_ablation with:
    input:
        unpack(train_inputs),
        plates=plate_inputs,
        code=stage_code("train", runner="pipeline.gan.launch"),
        lost=lambda wildcards: lost_inputs(f"results/models/{wildcards.subject}/ablations/{wildcards.ablation}/generator.pt"),
    output:
        "results/models/{subject}/ablations/{ablation}/generator.pt",
    params:
        run_dir="results/models/{subject}/ablations/{ablation}",
        clips=train_clip_flags,
        qc=train_qc_flags,
        plates=train_plate_flags,
        options=ablation_train_flags,
        init_global="",
    resources:
        **train_resources("train_ablation"),
    log:
        "results/logs/train_ablation/{subject}_{ablation}.log",
    benchmark:
        "results/benchmarks/train_ablation/{subject}_{ablation}.tsv"


rule transfer:
    input:
        unpack(transfer_models),
        normalized="results/normalized/{source}/{subject}.parquet",
        render="results/render_transfer/{source}/{subject}",
        source_frames="results/frames/{source}",
        code=stage_code("transfer"),
    output:
        video=report(
            "results/transfer/{source}/{subject}.mp4",
            caption="../report/transfer.rst",
            category="Transfer",
            subcategory="{source} -> {subject}",
        ),
        record="results/transfer/{source}/{subject}_generation.json",
    params:
        models=model_flags,
        device=config["transfer"]["device"],
        crf=config["transfer"]["crf"],
        precision=config["train"]["precision"],
        compile=compile_option(),
        audio="--audio" if config["transfer"]["audio"] else "--no-audio",
    threads: TORCH_THREADS
    resources:
        gpu=min(1, config["train"]["gpus"]),
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/transfer/{source}_{subject}.log",
    benchmark:
        "results/benchmarks/transfer/{source}_{subject}.tsv"
    shell:
        "python -m pipeline.cli transfer --generator {input.generator:q} {params.models}"
        " --record {output.record:q} --device {params.device}"
        " --crf {params.crf} --precision {params.precision}"
        " --compile {params.compile} {params.audio}"
        " -- {input.normalized:q} {input.render:q} {input.source_frames:q} {output.video:q} > {log} 2>&1"


# Every transfer measures itself: the video's poses re-detected against the poses it was given, beside
# the source's coverage by the target's training frames; the side-by-side video marks the frames that
# lose the body. The transfer's JSON is this record (the generation record of `edn transfer` inside).
rule measure_transfer:
    input:
        video="results/transfer/{source}/{subject}.mp4",
        generation="results/transfer/{source}/{subject}_generation.json",
        normalized="results/normalized/{source}/{subject}.parquet",
        render="results/render_transfer/{source}/{subject}",
        source_frames="results/frames/{source}",
        coverage="results/coverage/{source}/{subject}.json",
        code=stage_code("measure-transfer"),
    output:
        record="results/transfer/{source}/{subject}.json",
        per_frame="results/transfer/{source}/{subject}_fidelity.parquet",
        side_by_side=report(
            "results/transfer/{source}/{subject}_side_by_side.mp4",
            caption="../report/transfer_side_by_side.rst",
            category="Transfer",
            subcategory="{source} -> {subject}",
        ),
    params:
        crf=config["transfer"]["crf"],
        audio="--audio" if config["transfer"]["audio"] else "--no-audio",
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/measure_transfer/{source}_{subject}.log",
    benchmark:
        "results/benchmarks/measure_transfer/{source}_{subject}.tsv"
    shell:
        "python -m pipeline.cli measure-transfer --record {output.record:q} --per-frame {output.per_frame:q}"
        " --side-by-side {output.side_by_side:q} --coverage {input.coverage:q} --crf {params.crf} {params.audio}"
        " -- {input.video:q} {input.generation:q} {input.normalized:q} {input.render:q} {input.source_frames:q}"
        " > {log} 2>&1"


rule plot_transfer:
    input:
        record="results/transfer/{source}/{subject}.json",
        code=stage_code("plot", "transfer"),
    output:
        report(
            "results/plots/transfer/{source}/{subject}.png",
            caption="../report/transfer_fidelity.rst",
            category="Transfer",
            subcategory="{source} -> {subject}",
        ),
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/plot_transfer/{source}_{subject}.log",
    benchmark:
        "results/benchmarks/plot_transfer/{source}_{subject}.tsv"
    shell:
        "python -m pipeline.cli plot transfer -- {input.record:q} {output:q} > {log} 2>&1"


rule evaluate:
    input:
        unpack(train_inputs),
        unpack(evaluate_models),
        transfers=subject_transfers,
        code=stage_code("evaluate"),
    output:
        tables=report(
            "results/evaluation/{subject}/tables.html",
            caption="../report/evaluation.rst",
            category="Evaluation",
            subcategory="{subject}",
        ),
        markdown="results/evaluation/{subject}/tables.md",
        samples=report(
            "results/evaluation/{subject}/samples.png",
            caption="../report/samples.rst",
            category="Evaluation",
            subcategory="{subject}",
        ),
        metrics="results/evaluation/{subject}/metrics.parquet",
        frames="results/evaluation/{subject}/frames.parquet",
        record="results/evaluation/{subject}/evaluation.json",
    params:
        out_dir="results/evaluation/{subject}",
        clips=train_clip_flags,
        models=model_flags,
        ablations=ablation_flags,
        transfers=transfer_flags,
        options=evaluate_flags(),
    threads: TORCH_THREADS
    resources:
        gpu=min(1, config["train"]["gpus"]),
    conda:
        "../../envs/evaluate.yaml"
    log:
        "results/logs/evaluate/{subject}.log",
    benchmark:
        "results/benchmarks/evaluate/{subject}.tsv"
    shell:
        "python -m pipeline.cli evaluate {params.clips} --generator {input.generator:q}"
        " {params.models} {params.ablations} {params.transfers} {params.options} -- {params.out_dir:q} > {log} 2>&1"


rule plot_losses:
    input:
        unpack(loss_models),
        code=stage_code("plot", "losses"),
    output:
        report(
            "results/plots/losses/{subject}.png",
            caption="../report/losses.rst",
            category="Training",
            subcategory="{subject}",
        ),
    params:
        runs=loss_runs,
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/plot_losses/{subject}.log",
    benchmark:
        "results/benchmarks/plot_losses/{subject}.tsv"
    shell:
        "python -m pipeline.cli plot losses {params.runs} -- {output:q} > {log} 2>&1"


rule plot_stability:
    input:
        record="results/transfer/{source}/{subject}_generation.json",
        real=subject_frames,
        code=stage_code("plot", "stability"),
    output:
        report(
            "results/plots/stability/{source}/{subject}.png",
            caption="../report/stability.rst",
            category="Transfer",
            subcategory="{source} -> {subject}",
        ),
    params:
        real=real_frame_flags,
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/plot_stability/{source}_{subject}.log",
    benchmark:
        "results/benchmarks/plot_stability/{source}_{subject}.tsv"
    shell:
        "python -m pipeline.cli plot stability {params.real} -- {input.record:q} {output:q} > {log} 2>&1"
