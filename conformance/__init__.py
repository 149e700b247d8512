"""The conformance suite: checks by layer, two targets, evidence. Guide: docs/conformance.md.

- ``model``, ``checks``, ``requirements``: what a check is, every check in run order, the AI-conformance ids
- ``runner``, ``session``, ``context``: running selected checks honestly, one run from options to evidence,
  the run id, scratch folder and cleanup
- ``layers``: the check functions, one module per layer (infrastructure, accelerators, operators, scheduling,
  storage, workloads, observability), each with its local and cluster variants side by side
- ``targets``: the two targets, each a context below plus the lookup of check functions by name
- ``local``, ``local_ray``, ``probe``: the local context (this machine, an embedded Ray head, real workloads)
- ``kube``, ``kube_api``, ``judgements``: the cluster context, thin over the official client, with pure
  judgements of API answers; ``plan``: what a cluster run would submit and cost
- ``evidence``, ``progress``, ``cli``: junit.xml / results.json / e2e.log / report.md, the live view, and
  ``park conformance``
- ``conftest``, ``test_checks``: the pytest form (``pytest conformance/``)

Importing this package is cheap: Ray, torch, vLLM and the kubernetes client are imported when a check runs.
"""
