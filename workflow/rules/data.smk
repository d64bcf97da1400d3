rule fetch_demo:
    output:
        DEMO_VIDEOS,
    params:
        out_dir=DEMO_DIR,
        wheel_dir="resources/wheels",
    log:
        "results/logs/fetch_demo.log",
    benchmark:
        "results/benchmarks/fetch_demo.tsv"
    shell:
        "{EDN} fetch-demo {params.out_dir} --wheel-dir {params.wheel_dir} > {log} 2>&1"


rule extract:
    input:
        video=video_path,
        code=stage_code("extract"),
    output:
        directory("results/frames/{video}"),
    params:
        height=config["extract"]["height"],
        format=config["extract"]["format"],
        options=extract_options,
    log:
        "results/logs/extract/{video}.log",
    benchmark:
        "results/benchmarks/extract/{video}.tsv"
    shell:
        "{EDN} extract {input.video:q} {output:q} --height {params.height}"
        " --format {params.format} {params.options} > {log} 2>&1"
