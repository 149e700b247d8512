"""``python -m park.workloads.batch``: the reference batch-inference job (the RayJob's entrypoint)."""

from park.extras import require_extra

if __name__ == "__main__":  # vLLM (the optional LLM stage) needs this guard: it may re-import the main module
    require_extra("workloads", "ray", "torch", "pyarrow", "PIL", "numpy",
                  command="python -m park.workloads.batch")
    from park.workloads.batch.cli import main  # optional extra: workloads (numpy), checked above

    main()
