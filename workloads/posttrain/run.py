"""The driver: starts the generators and the learner group, runs the GRPO loop, checkpoints, writes the log.

Runs wherever a Ray driver runs: a laptop (starts a local Ray), a Ray Job on a KubeRay cluster (joins it), or
the tests' local Ray. One step::

    generate   every generator samples group_size completions for its share of the prompts (vLLM)
    score      the reward function scores each completion (here, in the driver: it is plain Python)
    learn      advantages relative to each group; every learner rank takes its share; DDP averages gradients
    sync       rank 0's new weights -> every generator (reload in place), then the checkpoint is written

The next step's rollouts carry the generator's log-probs, which the learner compares with its own before it
updates: the on-policy check. A learner rank that dies is replaced, with its whole group, from the newest
checkpoint (at most one step is lost); a rerun of the job resumes the same way.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import ray
from park.workloads import storage
from park.workloads.posttrain import checkpoint
from park.workloads.posttrain.config import PosttrainConfig, load_callable
from park.workloads.posttrain.generator import Generator, generator_env
from park.workloads.posttrain.learner import Learner, group_advantages
from ray.exceptions import RayActorError, RayTaskError

PEER_DEATH_WAIT_S = 30
"""How long the other learner ranks get to show a death after one failed with a communication error."""


class RewardBelowMargin(RuntimeError):
    """The run finished, but the reward did not rise by ``min_reward_gain``; the summary says by how much."""


class LearnerGroupLost(RuntimeError):
    """A learner rank died (its process or node is gone); the group is replaced from the newest checkpoint."""


class OffPolicy(RuntimeError):
    """The generator's log-probs differed from the learner's beyond the tolerance: weight sync is broken."""


def decide_gpu(config: PosttrainConfig) -> bool:
    """``auto``: GPUs when the Ray cluster has a whole one per learner plus the generators' shares."""
    if config.use_gpu != "auto":
        return config.use_gpu == "true"
    needed = config.learners * config.learner_gpus + config.generators * config.generator_gpus
    return ray.cluster_resources().get("GPU", 0) >= needed


def _ensure_ray() -> None:
    if not ray.is_initialized():
        ray.init(log_to_driver=True)


def _split(items: list, parts: int) -> list[list]:
    """``items`` in ``parts`` contiguous, near-equal shares (some may be empty when items are few)."""
    size, extra = divmod(len(items), parts)
    shares, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        shares.append(items[start:end])
        start = end
    return shares


class _Loop:
    """State of one run: actors, the reward log, resumes."""

    def __init__(self, config: PosttrainConfig, use_gpu: bool):
        self.config, self.use_gpu = config, use_gpu
        self.reward_fn = load_callable(config.reward, "--reward")
        self.prompts = list(load_callable(config.prompts, "--prompts")())
        self.rows: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.learner_restarts = 0
        self.checkpoint_uri: str | None = None
        self.fault = ({"step": config.fail_after_step + 1,
                       "marker_uri": storage.join(config.run_uri, checkpoint.FAULT_MARKER_FILE)}
                      if config.fail_after_step is not None else None)
        self._learner_class = ray.remote(Learner)
        generator_options = ({"num_gpus": config.generator_gpus, "num_cpus": config.generator_cpus} if use_gpu
                             else {"num_cpus": config.generator_cpus,
                                   "runtime_env": {"env_vars": generator_env()}})
        if config.generator_resource:
            generator_options["resources"] = {config.generator_resource: 1}
        self.generators = [
            ray.remote(Generator).options(**generator_options).remote(
                config.model, seed=config.seed + index, gpu_share=config.generator_gpus,
                max_tokens=config.max_tokens, temperature=config.temperature)
            for index in range(config.generators)
        ]
        self.learners: list = []
        self.backend = "nccl" if use_gpu else "gloo"

    # -- learner group --

    def start_learners(self) -> int:
        """A fresh learner group, restored from the newest checkpoint if there is one; the step it starts
        after (0 for a new run)."""
        config = self.config
        options = {"num_cpus": config.learner_cpus, **({"num_gpus": config.learner_gpus} if self.use_gpu else {}),
                   **({"resources": {config.learner_resource: 1}} if config.learner_resource else {})}
        self.learners = [
            self._learner_class.options(**options).remote(
                config.model, rank=rank, world_size=config.learners, lr=config.lr, kl_coef=config.kl_coef,
                temperature=config.temperature, seed=config.seed)
            for rank in range(config.learners)
        ]
        master = ray.get(self.learners[0].address.remote())
        ray.get([learner.join.remote(master) for learner in self.learners])
        latest = checkpoint.latest_checkpoint(config.run_uri)
        if latest is None:
            return 0
        steps = ray.get([learner.restore.remote(latest.uri) for learner in self.learners])
        self.rows = [row for row in latest.state.get("history", []) if row["step"] <= latest.step]
        self.resumes = list(latest.state.get("resumes", []))
        self.resumes.append({"from_step": latest.step, "checkpoint": latest.uri, "at": time.time()})
        self.checkpoint_uri = latest.uri
        print(f"resumed from the checkpoint of step {steps[0]}: {latest.uri}", flush=True)
        return latest.step

    def stop_learners(self) -> None:
        for learner in self.learners:
            ray.kill(learner)
        self.learners = []

    def sync(self) -> ray.ObjectRef:
        """Rank 0's weights into every generator; returns the ObjectRef of the bytes (for the checkpoint)."""
        blob = self.learners[0].weights.remote()
        ray.get([generator.load_weights.remote(blob) for generator in self.generators])
        return blob

    # -- one step --

    def step(self, step: int) -> dict[str, Any]:
        config = self.config
        started = time.perf_counter()
        shares = _split(self.prompts, len(self.generators))
        batches = ray.get([generator.generate.remote(share, config.group_size, config.seed * 100_003 + step)
                           for generator, share in zip(self.generators, shares) if share])
        samples = [sample for batch in batches for sample in batch]
        generated = time.perf_counter()

        rewards = [float(r) for r in self.reward_fn([s["prompt"] for s in samples],
                                                    [s["completion"] for s in samples])]
        if len(rewards) != len(samples):
            raise ValueError(f"--reward {config.reward} returned {len(rewards)} scores for {len(samples)} "
                             f"completions")
        advantages = group_advantages(rewards, config.group_size)
        scored = time.perf_counter()

        sample_shares = _split(samples, len(self.learners))
        advantage_shares = _split(advantages, len(self.learners))
        fault = self.fault if self.fault and self.fault["step"] == step else None
        pending = [learner.learn.remote(s, a, fault)
                   for learner, s, a in zip(self.learners, sample_shares, advantage_shares)]
        stats = _get_all(pending)
        learned = time.perf_counter()

        blob = self.sync()
        synced = time.perf_counter()
        row = {
            "step": step,
            "reward_mean": statistics.fmean(rewards),
            "reward_std": statistics.pstdev(rewards),
            "generate_s": round(generated - started, 4),
            "score_s": round(scored - generated, 4),
            "learn_s": round(learned - scored, 4),
            "sync_s": round(synced - learned, 4),
            "logprob_max_abs_diff": max(s["logprob_max_abs_diff"] for s in stats),
            "tokens_generated": sum(len(s["completion_ids"]) for s in samples),
            "loss": statistics.fmean(s["loss"] for s in stats),
            "kl": statistics.fmean(s["kl"] for s in stats),
        }
        state = {"history": [*self.rows, row], "resumes": self.resumes}
        self.checkpoint_uri = ray.get(self.learners[0].save.remote(config.run_uri, step, state,
                                                                   config.keep_checkpoints, blob))
        row["checkpoint_s"] = round(time.perf_counter() - synced, 4)
        self.rows.append(row)
        checkpoint.write_rewards_csv(config.run_uri, self.rows)
        print(f"step {step}: reward {row['reward_mean']:.3f} (std {row['reward_std']:.3f}) "
              f"logprob dev {row['logprob_max_abs_diff']:.2e} kl {row['kl']:.4f}", flush=True)
        return row


def _get_all(refs: list) -> list:
    """Results of all ``refs``; raises as soon as any fails (a dead rank leaves its peers blocked in an
    all-reduce, so waiting on them in order would hang until the process-group timeout).

    A dead rank shows up first either as its own ActorDiedError or as a peer's gloo/NCCL error ("connection
    closed by peer"); in the second case the others get :data:`PEER_DEATH_WAIT_S` to show the death. Either
    way :class:`LearnerGroupLost` is raised; a failure with every rank alive is raised as it is."""
    remaining = list(refs)
    while remaining:
        done, remaining = ray.wait(remaining, num_returns=1)
        try:
            ray.get(done[0])
        except RayActorError as err:
            raise LearnerGroupLost(f"a learner rank died: {err}") from err
        except RayTaskError:
            for ref in remaining:
                try:
                    ray.get(ref, timeout=PEER_DEATH_WAIT_S)
                except RayActorError as died:
                    raise LearnerGroupLost(f"a learner rank died: {died}") from died
                except Exception as other:  # noqa: BLE001 - another symptom of the same failure, or still running
                    print(f"another learner rank: {type(other).__name__}", flush=True)
            raise
    return ray.get(refs)


def run(config: PosttrainConfig) -> dict[str, Any]:
    """Run (or resume) the post-training loop; write ``rewards.csv`` and ``summary.json`` to the run folder
    and return the summary. Raises :class:`OffPolicy` or :class:`RewardBelowMargin` after writing the
    summary when a check fails, and the underlying error when the run breaks (checkpoints and the log stay)."""
    _ensure_ray()
    started = time.perf_counter()
    use_gpu = decide_gpu(config)
    loop = _Loop(config, use_gpu)
    error: BaseException | None = None
    first_step = 0
    generator_info: list[dict] = []
    try:
        first_step = loop.start_learners()
        generator_info = ray.get([g.info.remote() for g in loop.generators])
        if first_step:
            loop.sync()  # the generators start from the model folder; bring them to the checkpoint
        step = first_step + 1
        while step <= config.steps:
            try:
                loop.step(step)
                step += 1
            except LearnerGroupLost as err:
                loop.learner_restarts += 1
                if loop.learner_restarts > config.max_learner_restarts:
                    raise
                print(f"learner group failed in step {step} ({type(err).__name__}); restarting it from the "
                      f"newest checkpoint ({loop.learner_restarts}/{config.max_learner_restarts})", flush=True)
                loop.stop_learners()
                step = loop.start_learners() + 1
                loop.sync()
    except BaseException as err:  # noqa: BLE001 - recorded in the summary, then re-raised
        error = err
    summary = _summary(config, loop, use_gpu, first_step, generator_info, time.perf_counter() - started, error)
    storage.write_text(storage.join(config.run_uri, checkpoint.SUMMARY_FILE), json.dumps(summary, indent=2))
    loop.stop_learners()
    for generator in loop.generators:
        ray.kill(generator)
    if error is not None:
        raise error
    if not summary["on_policy"]:
        raise OffPolicy(summary["message"])
    if not summary["passed"]:
        raise RewardBelowMargin(summary["message"])
    return summary


def _summary(config: PosttrainConfig, loop: _Loop, use_gpu: bool, first_step: int, generator_info: list[dict],
             seconds: float, error: BaseException | None) -> dict[str, Any]:
    rows = loop.rows
    window = min(config.window, max(1, len(rows) // 2))
    first = statistics.fmean(r["reward_mean"] for r in rows[:window]) if rows else None
    last = statistics.fmean(r["reward_mean"] for r in rows[-window:]) if rows else None
    gain = last - first if rows else None
    worst = max((r["logprob_max_abs_diff"] for r in rows), default=None)
    on_policy = worst is not None and worst <= config.logprob_tolerance
    if error is not None:
        passed, message = False, f"run failed: {type(error).__name__}: {error}"
    elif not on_policy:
        passed, message = False, (f"generator off-policy: log-prob deviation {worst:.3g} exceeds the tolerance "
                                  f"{config.logprob_tolerance:g}")
    elif config.min_reward_gain is not None and gain < config.min_reward_gain:
        passed, message = False, (f"reward rose {gain:.3f} (first {window} steps {first:.3f}, last {window} "
                                  f"{last:.3f}), below --min-reward-gain {config.min_reward_gain}")
    else:
        passed, message = True, "ok"
    timings = {key: statistics.fmean(r.get(key, 0.0) for r in rows) if rows else None
               for key in ("generate_s", "score_s", "learn_s", "sync_s", "checkpoint_s")}
    fault = None
    marker = storage.join(config.run_uri, checkpoint.FAULT_MARKER_FILE)
    if storage.exists(marker):
        fault = json.loads(storage.read_text(marker))
    return {
        "run_uri": config.run_uri,
        "steps_done": rows[-1]["step"] if rows else 0,
        "steps": config.steps,
        "window": window,
        "first_reward_mean": first,
        "last_reward_mean": last,
        "reward_gain": gain,
        "min_reward_gain": config.min_reward_gain,
        "logprob_tolerance": config.logprob_tolerance,
        "logprob_max_abs_diff": worst,
        "on_policy": on_policy,
        "checkpoint_uri": loop.checkpoint_uri,
        "rewards_csv": storage.join(config.run_uri, checkpoint.REWARDS_FILE),
        "resumed_from_step": loop.resumes[-1]["from_step"] if loop.resumes else None,
        "resumes": loop.resumes,
        "learner_restarts": loop.learner_restarts,
        "injected_fault": fault,
        "first_step_this_run": first_step + 1,
        "mean_step_timings_s": timings,
        "tokens_generated": sum(r["tokens_generated"] for r in rows),
        "generators": generator_info,
        "device": "cuda" if use_gpu else "cpu",
        "backend": loop.backend,
        "wall_s": round(seconds, 2),
        "passed": passed,
        "message": message,
        "config": config.model_dump(),
    }
