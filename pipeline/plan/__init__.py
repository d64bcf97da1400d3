"""What the Snakemake workflow computes when it plans its jobs: each stage's code inputs, the video
sheet, the paths the rules ask for, their flags and what a training job asks a cluster for. Plain
Python, tested without Snakemake; the ``.smk`` files call it."""
