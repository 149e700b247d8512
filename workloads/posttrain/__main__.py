"""``python -m park.workloads.posttrain``: the reference post-training job (what the RayJob's entrypoint runs)."""

from park.extras import require_extra
from park.workloads.posttrain.cli import main

if __name__ == "__main__":
    require_extra("cpu", "ray", "torch", "transformers", "safetensors", "vllm", alternative="gpu",
                  command="python -m park.workloads.posttrain")
    main()
