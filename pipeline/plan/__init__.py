"""What the Snakemake workflow computes when it plans its jobs: each stage's code inputs, the video
sheet, the training flags. Plain Python, tested without Snakemake; the ``.smk`` files call it."""
