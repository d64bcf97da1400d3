# Background plate of each target clip: temporal median of its frames with the person masked
# out by its smoothed keypoints; plate.json records the inpainted share and the moving-camera check.
# Only the frames training uses (train: holdout): the held-out frames' background stays unseen.


rule plate:
    input:
        frames="results/frames/{video}",
        keypoints="results/keypoints/{video}/smooth.parquet",
        code=stage_code("plate"),
    output:
        plate=report(
            "results/plate/{video}/plate.png",
            caption="../report/plate.rst",
            category="Background plate",
            subcategory="{video}",
        ),
        record="results/plate/{video}/plate.json",
    params:
        out_dir="results/plate/{video}",
        holdout=config["train"]["holdout"],
    conda:
        "../../envs/pose.yaml"
    log:
        "results/logs/plate/{video}.log",
    benchmark:
        "results/benchmarks/plate/{video}.tsv"
    shell:
        "python -m pipeline.cli plate --holdout {params.holdout} --"
        " {input.frames:q} {input.keypoints:q} {params.out_dir:q} > {log} 2>&1"
