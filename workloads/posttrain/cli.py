"""Command line of the post-training job. Exit codes: 0 passed, 1 a check failed (reward below the margin,
generator off-policy), 2 bad input (before any Ray work), 3 the run failed. The last checkpoint,
rewards.csv and summary.json stay in the run folder in every case."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from park.workloads.posttrain.config import (
    DEFAULT_LOGPROB_TOLERANCE,
    DEFAULT_PROMPTS,
    DEFAULT_REWARD,
    FAIL_AFTER_STEP_ENV,
    TINY_MODEL,
    ConfigError,
    build_config,
)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def posttrain(
    model: Annotated[str, typer.Option(help=f"Model folder (path, file://, s3://, gs://) or {TINY_MODEL}.")],
    storage_uri: Annotated[str, typer.Option(help="Where the run folder goes: a path, file://, s3:// or gs://.")],
    run_name: Annotated[str, typer.Option(help="Run folder under the storage URI; rerunning it resumes.")] = (
        "park-posttrain"),
    steps: Annotated[int, typer.Option(help="Optimizer steps in all (counting steps before a resume).")] = 20,
    group_size: Annotated[int, typer.Option(help="Completions per prompt (2 or more).")] = 4,
    reward: Annotated[str, typer.Option(help="module:function(prompts, completions) -> list[float].")] = (
        DEFAULT_REWARD),
    prompts: Annotated[str, typer.Option(help="module:function() -> list of prompts.")] = DEFAULT_PROMPTS,
    max_tokens: Annotated[int, typer.Option(help="Tokens per completion.")] = 16,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-2,
    kl_coef: Annotated[float, typer.Option(help="Weight of the KL penalty to the reference model.")] = 0.02,
    learners: Annotated[int, typer.Option(help="Data-parallel learner ranks (DDP).")] = 2,
    generators: Annotated[int, typer.Option(help="vLLM engines.")] = 1,
    use_gpu: Annotated[str, typer.Option(help="auto, true or false.")] = "auto",
    generator_gpus: Annotated[float, typer.Option(help="GPU share of each vLLM engine on GPU clusters.")] = 0.5,
    learner_gpus: Annotated[float, typer.Option(help="GPU share of each learner rank on GPU clusters.")] = 1.0,
    generator_resource: Annotated[str | None, typer.Option(
        help="Custom Ray resource each vLLM engine takes one unit of (the RayJob's generator pods offer it).")] = None,
    learner_resource: Annotated[str | None, typer.Option(
        help="Custom Ray resource each learner rank takes one unit of (the RayJob's learner pods offer it).")] = None,
    learner_cpus: Annotated[float, typer.Option(help="Ray CPUs per learner rank.")] = 0.5,
    generator_cpus: Annotated[float, typer.Option(help="Ray CPUs per vLLM engine.")] = 0.5,
    logprob_tolerance: Annotated[float, typer.Option(
        help="Largest generator-vs-learner log-prob deviation that counts as on-policy.")] = DEFAULT_LOGPROB_TOLERANCE,
    min_reward_gain: Annotated[float | None, typer.Option(
        help="Fail (exit 1) unless the last steps' mean reward beats the first steps' by this.")] = None,
    window: Annotated[int, typer.Option(help="Steps averaged at each end for the reward gain.")] = 3,
    seed: Annotated[int, typer.Option()] = 0,
    fail_after_step: Annotated[int | None, typer.Option(
        envvar=FAIL_AFTER_STEP_ENV, hidden=True, help="Test only: kill a learner in the next step, once.")] = None,
) -> None:
    """On-policy GRPO: vLLM generators and a DDP learner on Ray, weights synced every step."""
    try:
        config = build_config(
            model=model, storage_uri=storage_uri, run_name=run_name, steps=steps, group_size=group_size,
            reward=reward, prompts=prompts, max_tokens=max_tokens, lr=lr, kl_coef=kl_coef, learners=learners,
            generators=generators, use_gpu=use_gpu, generator_gpus=generator_gpus, learner_gpus=learner_gpus,
            generator_resource=generator_resource, learner_resource=learner_resource, learner_cpus=learner_cpus,
            generator_cpus=generator_cpus, logprob_tolerance=logprob_tolerance, min_reward_gain=min_reward_gain,
            window=window, seed=seed, fail_after_step=fail_after_step)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None

    from park.workloads.posttrain import run as loop  # imports Ray and torch: only after the checks

    try:
        summary = loop.run(config)
    except (loop.OffPolicy, loop.RewardBelowMargin) as err:
        typer.echo(f"FAILED: {err}\nrun folder: {config.run_uri}", err=True)
        raise typer.Exit(1) from None
    except Exception as err:  # noqa: BLE001 - actor deaths beyond the restarts, storage errors end the job
        typer.echo(f"FAILED: the run did not finish: {type(err).__name__}: {err}\n"
                   f"last checkpoint, rewards.csv and summary.json: {config.run_uri}", err=True)
        raise typer.Exit(3) from None
    typer.echo(json.dumps({k: summary[k] for k in (
        "steps_done", "first_reward_mean", "last_reward_mean", "reward_gain", "logprob_tolerance",
        "logprob_max_abs_diff", "checkpoint_uri", "resumed_from_step", "mean_step_timings_s")}, indent=1))
    typer.echo(f"PASSED: reward {summary['first_reward_mean']:.3f} -> {summary['last_reward_mean']:.3f}; "
               f"log-prob deviation {summary['logprob_max_abs_diff']:.2e} <= {summary['logprob_tolerance']:g}")


def main() -> None:
    app(prog_name=f"{sys.executable.rsplit('/', 1)[-1]} -m park.workloads.posttrain")
