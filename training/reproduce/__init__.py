"""Regenerate the paper's tables and figures (§4) from runs: experiment files -> missing runs
trained -> evaluations -> `results/NAME.md`, `.csv`, `.png`, the paper's numbers beside ours."""
