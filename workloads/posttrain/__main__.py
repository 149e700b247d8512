"""``python -m park.workloads.posttrain``: the reference post-training job (what the RayJob's entrypoint runs)."""

from park.workloads.posttrain.cli import main

if __name__ == "__main__":
    main()
