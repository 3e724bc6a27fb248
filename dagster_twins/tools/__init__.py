"""Tools beside the product, run from the CLI and never by the pipeline: benchmarks, the model-quality report and
the evaluations it draws on (the demo's planted truth, a public transaction log)."""
