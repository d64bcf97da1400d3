# Diagnostic figures, registered for `snakemake --report results/report.html`.
rule plot_tracks:
    input:
        raw="results/keypoints/{video}/raw.parquet",
        smooth="results/keypoints/{video}/smooth.parquet",
        code=stage_code("plot", "tracks"),
    output:
        report(
            "results/plots/tracks/{video}.png",
            caption="../report/tracks.rst",
            category="Keypoints",
            subcategory="{video}",
        ),
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/plot_tracks/{video}.log",
    benchmark:
        "results/benchmarks/plot_tracks/{video}.tsv"
    shell:
        "python -m pipeline.cli plot tracks -- {input.raw:q} {input.smooth:q} {output:q} > {log} 2>&1"


rule plot_normalization:
    input:
        normalized="results/normalized/{source}/{subject}.parquet",
        source_stats="results/stats/video/{source}.json",
        target_stats="results/stats/subject/{subject}.json",
        code=stage_code("plot", "normalization"),
    output:
        report(
            "results/plots/normalization/{source}/{subject}.png",
            caption="../report/normalization.rst",
            category="Normalization",
            subcategory="{source} -> {subject}",
        ),
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/plot_normalization/{source}_{subject}.log",
    benchmark:
        "results/benchmarks/plot_normalization/{source}_{subject}.tsv"
    shell:
        "python -m pipeline.cli plot normalization -- {input.normalized:q} {input.source_stats:q}"
        " {input.target_stats:q} {output:q} > {log} 2>&1"


rule plot_bone_ratios:
    input:
        normalized="results/normalized/{source}/{subject}.parquet",
        target_stats="results/stats/subject/{subject}.json",
        code=stage_code("plot", "bones"),
    output:
        report(
            "results/plots/bones/{source}/{subject}.png",
            caption="../report/bones.rst",
            category="Normalization",
            subcategory="{source} -> {subject}",
        ),
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/plot_bone_ratios/{source}_{subject}.log",
    benchmark:
        "results/benchmarks/plot_bone_ratios/{source}_{subject}.tsv"
    shell:
        "python -m pipeline.cli plot bones -- {input.normalized:q} {input.target_stats:q} {output:q} > {log} 2>&1"


rule plot_qc:
    input:
        raw="results/qc/{video}/raw.parquet",
        smooth="results/qc/{video}/smooth.parquet",
        code=stage_code("plot", "qc"),
    output:
        report(
            "results/plots/qc/{video}.png",
            caption="../report/qc.rst",
            category="Keypoints",
            subcategory="{video}",
        ),
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/plot_qc/{video}.log",
    benchmark:
        "results/benchmarks/plot_qc/{video}.tsv"
    shell:
        "python -m pipeline.cli plot qc -- {input.raw:q} {input.smooth:q} {output:q} > {log} 2>&1"
