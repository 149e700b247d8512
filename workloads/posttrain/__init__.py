"""Post-training reference workload: on-policy GRPO with vLLM generators and a PyTorch DDP learner on Ray.

The loop (run.py): every step the generators (vLLM engines in Ray actors; a fractional GPU each on GPU
pools, CPU otherwise) sample ``group_size`` completions per prompt; a plain reward function scores them;
the learner ranks (Ray actors joined in one PyTorch DDP group: gloo on CPU, NCCL on GPU) take one step of
the GRPO loss (group-relative advantages, KL to a frozen reference); rank 0's new weights are reloaded in
place into every engine (generator.py) and written as a checkpoint (checkpoint.py). Before each update the
learner compares its log-probs of the sampled tokens with the engine's: the on-policy check.

From Python::

    from park.workloads.posttrain.config import build_config, TINY_MODEL
    from park.workloads.posttrain.run import run

    summary = run(build_config(model=TINY_MODEL, storage_uri="file:///tmp/pt", steps=20, min_reward_gain=0.2))

``build_config`` raises :class:`~park.workloads.posttrain.config.ConfigError` (one line, naming the option)
for bad input before anything starts; ``run`` starts a local Ray unless one is initialised or reachable.
The run folder ``<storage_uri>/<run_name>/`` then holds:

- ``rewards.csv``: one row per step: step, reward_mean, reward_std, generate_s, score_s, learn_s, sync_s,
  logprob_max_abs_diff, tokens_generated, then extra columns (loss, kl, checkpoint_s);
- ``summary.json`` (also returned): first_reward_mean / last_reward_mean over ``window`` steps at each end,
  reward_gain and min_reward_gain (the margin), logprob_tolerance and logprob_max_abs_diff (the worst
  deviation of the run), on_policy, checkpoint_uri (newest), resumed_from_step (None on a fresh run),
  resumes, learner_restarts, mean_step_timings_s, device, backend, passed, message;
- ``checkpoints/step-NNNNNN/`` (the newest ``keep_checkpoints``): model.safetensors, optimizer.pt,
  state.json.

Command line: ``python -m park.workloads.posttrain --model ... --storage-uri ... --steps ... --group-size ...
--reward module:fn`` (cli.py; exit 0 passed, 1 a check failed, 2 bad input, 3 the run failed). The RayJob
that runs it on KubeRay through Kueue is built by manifest.py. Swapping the task: ``--reward`` and
``--prompts`` take ``module:function`` (tasks.py has the defaults), ``--model`` any Llama-style folder.
"""
