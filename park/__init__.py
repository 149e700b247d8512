"""park-stack: the PARK stack (PyTorch, AI models, Ray, Kubernetes; vLLM for serving) as code."""

__version__ = "0.1.0"
