"""``python -m park.workloads.train``: the reference training job (what the RayJob's entrypoint runs)."""

from park.extras import require_extra

if __name__ == "__main__":
    require_extra("workloads", "ray", "torch", "pyarrow", command="python -m park.workloads.train")
    from park.workloads.train.cli import main  # optional extra: workloads, checked above

    main()
