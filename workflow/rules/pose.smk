# This family's helpers; what several families need is in common.smk.
include: "helpers/pose.smk"


if config["detect"]["chunk_frames"]:

    rule detect_chunk:
        input:
            frames="results/frames/{video}",
            code=stage_code("detect"),
        output:
            temp("results/keypoints/{video}/chunks/{chunk}.parquet"),
        wildcard_constraints:
            chunk=r"\d+",
        params:
            options=detect_options,
            range=chunk_range,
            warmup=config["detect"]["chunk_overlap"],
        conda:
            "../../envs/pose.yaml"
        log:
            "results/logs/detect/{video}_chunk{chunk}.log",
        benchmark:
            "results/benchmarks/detect/{video}_chunk{chunk}.tsv"
        shell:
            "python -m pipeline.cli detect {params.options} {params.range} --warmup {params.warmup}"
            " -- {input.frames:q} {output:q} > {log} 2>&1"

    rule gather_keypoints:
        input:
            frames="results/frames/{video}",
            chunks=detect_chunks,
            code=stage_code("gather-keypoints"),
        output:
            "results/keypoints/{video}/raw.parquet",
        params:
            min_fraction=config["detect"]["min_detected_fraction"],
        conda:
            "../../envs/pose.yaml"
        log:
            "results/logs/detect/{video}.log",
        benchmark:
            "results/benchmarks/detect/{video}.tsv"
        shell:
            "python -m pipeline.cli gather-keypoints --min-detected-fraction {params.min_fraction}"
            " -- {input.frames:q} {output:q} {input.chunks:q} > {log} 2>&1"

else:

    rule detect:
        input:
            frames="results/frames/{video}",
            code=stage_code("detect"),
        output:
            "results/keypoints/{video}/raw.parquet",
        params:
            options=detect_options,
            min_fraction=config["detect"]["min_detected_fraction"],
        conda:
            "../../envs/pose.yaml"
        log:
            "results/logs/detect/{video}.log",
        benchmark:
            "results/benchmarks/detect/{video}.tsv"
        shell:
            "python -m pipeline.cli detect {params.options} --min-detected-fraction {params.min_fraction}"
            " -- {input.frames:q} {output:q} > {log} 2>&1"


# Pose quality control, on the raw detections (smoothing uses it) and on the smoothed track
# (training skips its bad frames, normalization repairs them in the sources).
rule qc:
    input:
        keypoints="results/keypoints/{video}/{stage}.parquet",
        code=stage_code("qc"),
    output:
        "results/qc/{video}/{stage}.parquet",
    wildcard_constraints:
        stage="raw|smooth",
    params:
        options=qc_flags(),
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/qc/{video}_{stage}.log",
    benchmark:
        "results/benchmarks/qc/{video}_{stage}.tsv"
    shell:
        "python -m pipeline.cli qc {params.options} -- {input.keypoints:q} {output:q} > {log} 2>&1"


rule smooth:
    input:
        keypoints="results/keypoints/{video}/raw.parquet",
        qc="results/qc/{video}/raw.parquet",
        code=stage_code("smooth"),
    output:
        "results/keypoints/{video}/smooth.parquet",
    params:
        window=config["smooth"]["window"],
        max_gap=config["smooth"]["max_gap"],
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/smooth/{video}.log",
    benchmark:
        "results/benchmarks/smooth/{video}.tsv"
    shell:
        "python -m pipeline.cli smooth --window {params.window} --max-gap {params.max_gap} --qc {input.qc:q}"
        " -- {input.keypoints:q} {output:q} > {log} 2>&1"


rule stats_subject:
    input:
        keypoints=subject_keypoints,
        code=stage_code("stats"),
    output:
        "results/stats/subject/{subject}.json",
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/stats/subject_{subject}.log",
    benchmark:
        "results/benchmarks/stats/subject_{subject}.tsv"
    shell:
        "python -m pipeline.cli stats -- {input.keypoints:q} {output:q} > {log} 2>&1"


rule stats_video:
    input:
        keypoints="results/keypoints/{video}/smooth.parquet",
        code=stage_code("stats"),
    output:
        "results/stats/video/{video}.json",
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/stats/video_{video}.log",
    benchmark:
        "results/benchmarks/stats/video_{video}.tsv"
    shell:
        "python -m pipeline.cli stats -- {input.keypoints:q} {output:q} > {log} 2>&1"


rule normalize:
    input:
        source="results/keypoints/{source}/smooth.parquet",
        source_qc="results/qc/{source}/smooth.parquet",
        source_stats="results/stats/video/{source}.json",
        target_stats="results/stats/subject/{subject}.json",
        code=stage_code("normalize"),
    output:
        "results/normalized/{source}/{subject}.parquet",
    params:
        method=config["normalize"]["method"],
        center="--center-x" if config["normalize"]["center_x"] else "",
        view="--keep-in-view" if config["normalize"]["keep_in_view"] else "--no-keep-in-view",
        max_repair_gap=config["qc"]["max_repair_gap"],
        max_repaired_share=config["qc"]["max_repaired_share"],
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/normalize/{source}_{subject}.log",
    benchmark:
        "results/benchmarks/normalize/{source}_{subject}.tsv"
    shell:
        "python -m pipeline.cli normalize --method {params.method} {params.center} {params.view} --qc {input.source_qc:q}"
        " --max-repair-gap {params.max_repair_gap} --max-repaired-share {params.max_repaired_share}"
        " -- {input.source:q} {input.source_stats:q} {input.target_stats:q} {output:q} > {log} 2>&1"
        # its warnings (poses outside the frame, QC repairs) also reach the run's own output
        "; grep -h WARNING {log:q} >&2 || true"


rule render_target:
    input:
        keypoints="results/keypoints/{video}/smooth.parquet",
        code=stage_code("render"),
        lost=lambda wildcards: lost_inputs(f"results/render/{wildcards.video}"),
    output:
        directory("results/render/{video}"),
    params:
        flags=render_flags(),
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/render/{video}.log",
    benchmark:
        "results/benchmarks/render/{video}.tsv"
    shell:
        "python -m pipeline.cli render {params.flags} -- {input.keypoints:q} {output:q} > {log} 2>&1"


rule render_transfer:
    input:
        keypoints="results/normalized/{source}/{subject}.parquet",
        code=stage_code("render"),
    output:
        directory("results/render_transfer/{source}/{subject}"),
    params:
        flags=render_flags(),
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/render_transfer/{source}_{subject}.log",
    benchmark:
        "results/benchmarks/render_transfer/{source}_{subject}.tsv"
    shell:
        "python -m pipeline.cli render {params.flags} -- {input.keypoints:q} {output:q} > {log} 2>&1"


# Pose coverage, before any training: how far each source frame's limbs are from the nearest the
# target's training frames show (docs/evaluation.md, "Pose coverage"); and the target alone, what it
# never shows ("what to film more of").
rule coverage:
    input:
        target=subject_keypoints,
        source="results/normalized/{source}/{subject}.parquet",
        code=stage_code("coverage"),
    output:
        report(
            "results/coverage/{source}/{subject}.json",
            caption="../report/coverage.rst",
            category="Transfer",
            subcategory="{source} -> {subject}",
        ),
    params:
        holdout=config["train"]["holdout"],
        mirror="--mirror" if config["train"]["mirror"] > 0 else "",
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/coverage/{source}_{subject}.log",
    benchmark:
        "results/benchmarks/coverage/{source}_{subject}.tsv"
    shell:
        "python -m pipeline.cli coverage --holdout {params.holdout} {params.mirror} --source {input.source:q} --target {input.target:q}"
        " -- {output:q} > {log} 2>&1"


rule coverage_target:
    input:
        target=subject_keypoints,
        code=stage_code("coverage"),
    output:
        report(
            "results/coverage/target/{subject}.json",
            caption="../report/coverage_target.rst",
            category="Keypoints",
            subcategory="{subject}",
        ),
    params:
        holdout=config["train"]["holdout"],
        mirror="--mirror" if config["train"]["mirror"] > 0 else "",
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/coverage_target/{subject}.log",
    benchmark:
        "results/benchmarks/coverage_target/{subject}.tsv"
    shell:
        "python -m pipeline.cli coverage --holdout {params.holdout} {params.mirror} --target {input.target:q}"
        " -- {output:q} > {log} 2>&1"
