"""``python -m park.workloads.batch``: the reference batch-inference job (what the RayJob's entrypoint runs)."""

from park.workloads.batch.cli import main

if __name__ == "__main__":  # vLLM (the optional LLM stage) needs this guard: it may re-import the main module
    main()
