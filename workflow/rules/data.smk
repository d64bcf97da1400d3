# This family's helpers; what several families need is in common.smk.
include: "helpers/data.smk"


# fetch_demo downloads (pip download of the demo wheel): it runs where Snakemake runs, the login node
# on a cluster, not on a compute node that usually has no internet. `make prefetch` does it beforehand.
localrules:
    fetch_demo,


rule fetch_demo:
    output:
        DEMO_VIDEOS,
    params:
        # <demo_dir>/<set>/<camera>.mp4 -> <demo_dir>
        out_dir=lambda wildcards, output: str(Path(output[0]).parents[1]),
        wheel_dir="resources/wheels",
    conda:
        "../../envs/workflow.yaml"
    log:
        "results/logs/fetch_demo.log",
    benchmark:
        "results/benchmarks/fetch_demo.tsv"
    shell:
        "python -m pipeline.cli fetch-demo --wheel-dir {params.wheel_dir:q} -- {params.out_dir:q} > {log} 2>&1"


# A checkpoint so chunked detection (detect.chunk_frames) learns the frame count from meta.json.
checkpoint extract:
    input:
        video=video_path,
        code=stage_code("extract"),
        lost=lambda wildcards: lost_inputs(f"results/frames/{wildcards.video}"),
    output:
        directory("results/frames/{video}"),
    params:
        height=config["extract"]["height"],
        format=config["extract"]["format"],
        options=extract_options,
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/extract/{video}.log",
    benchmark:
        "results/benchmarks/extract/{video}.tsv"
    shell:
        "python -m pipeline.cli extract --height {params.height} --format {params.format} {params.options}"
        " -- {input.video:q} {output:q} > {log} 2>&1"
