"""``python -m park.workloads.train``: the reference training job (what the RayJob's entrypoint runs)."""

from park.workloads.train.cli import main

if __name__ == "__main__":
    main()
