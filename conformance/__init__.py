"""The conformance suite: checks by layer, two targets, evidence. Guide: docs/conformance.md.

- ``model``, ``checks``, ``requirements``: what a check is, every check in run order, the AI-conformance ids
- ``runner``, ``session``, ``context``: running selected checks honestly, one run from options to evidence,
  the run id, scratch folder and cleanup
- ``local``, ``local_ray``, ``workload_checks``, ``probe``: the local target (embedded Ray, real workloads)
- ``kube``, ``kube_api``, ``judgements``: the kubernetes target, thin over the official client, with pure
  judgements of API answers
- ``evidence``, ``progress``, ``cli``: junit.xml / results.json / e2e.log / report.md, the live view, and
  ``park conformance``
- ``conftest``, ``test_checks``: the pytest form (``pytest conformance/``)

Importing this package is cheap: Ray, torch, vLLM and the kubernetes client are imported when a check runs.
"""
