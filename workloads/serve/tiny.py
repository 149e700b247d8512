"""A tiny random Llama that transformers and vLLM both load, built in seconds without network.

There is no model hub here (and none on an air-gapped cluster), yet the serving workload, the batch
workload's LLM stage and the conformance suite all need a real model directory. This builds one: a
2-layer Llama with random weights (fixed seed, so every build is identical) and a byte-level BPE
tokenizer trained locally on a small built-in corpus, with a chat template. Its answers are gibberish,
but greedy decoding is deterministic, which makes Hugging Face ``generate`` a usable oracle for vLLM.

``park tiny-model DIR`` calls :func:`build_tiny_llama`.
"""

from __future__ import annotations

import string
from pathlib import Path

TINY_SEED = 1234
TINY_HIDDEN = 64
TINY_LAYERS = 2
"""Heads are 32 wide (2 heads, 1 KV head): vLLM's CPU attention supports head sizes 32 and up, not 16."""
TINY_VOCAB = 512
TINY_MAX_POSITIONS = 1024
INIT_STD = 0.25
"""Larger than Llama's 0.02 so next-token logits are well apart: greedy picks then do not flip on the
float rounding differences between vLLM's kernels and Hugging Face's."""

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}\n{% endif %}"
)
"""Zephyr-like: ``<s><|user|>\\nHello</s>\\n<|assistant|>\\n``."""

_CORPUS = """\
The PARK stack runs PyTorch training, Ray jobs and vLLM serving on Kubernetes.
A platform team writes one stack config and gets a GPU cluster with KubeRay and Kueue.
Ray Serve routes each request to a replica; vLLM batches tokens on the accelerator.
Teams share GPUs through quotas in one cohort; idle quota is lent to the others.
Checkpoints go to the bucket, outputs go to the bucket, and the report lists what passed.
What is the capital of France? Paris is the capital of France.
Hello! How can I help you today? Tell me a short story about a small robot.
Once upon a time there was a tiny model that answered every question with confidence.
"""


ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \n"
"""Every character the tokenizer knows; others become ``<unk>``. Printable ASCII, space and newline
only, so whatever the random model emits decodes to plain, valid text."""


def _training_text() -> list[str]:
    return [*_CORPUS.splitlines(), ALPHABET] * 4


def build_tokenizer():
    """A byte-level BPE tokenizer trained on the built-in corpus, wrapped for transformers.

    The alphabet is :data:`ALPHABET` (not all 256 bytes), so every token the random model may emit
    decodes to valid text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = [BOS, EOS, UNK, *ROLE_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=special, show_progress=False)
    tokenizer.train_from_iterator(_training_text(), trainer=trainer)
    # Prompts start with <s>, as Llama's do; the chat template adds it itself.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=EOS,
        additional_special_tokens=list(ROLE_TOKENS), model_max_length=TINY_MAX_POSITIONS,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_tiny_llama(path: str | Path, *, seed: int = TINY_SEED) -> Path:
    """Write a tiny random Llama (weights, config, tokenizer, chat template) to ``path``; return it.

    Deterministic: the same seed gives the same weights, so outputs are comparable across builds;
    another seed gives another model with the same tokenizer (tests use two to check routing).
    """
    return build_random_llama(path, hidden=TINY_HIDDEN, layers=TINY_LAYERS, seed=seed)


def build_random_llama(path: str | Path, *, hidden: int, layers: int, seed: int = TINY_SEED) -> Path:
    """A random Llama of any width and depth with the tiny model's tokenizer and chat template.

    The benchmark uses a wider one too: on the tiny model a forward pass costs next to nothing, so
    batching has little to amortise. Heads are 32 wide up to ``hidden=128`` (the tiny model), 64 above.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    head_dim = 32 if hidden <= 128 else 64
    if hidden % head_dim:
        raise ValueError(f"hidden={hidden} must be a multiple of the head size {head_dim}")
    heads = hidden // head_dim
    target = Path(path).expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=TINY_MAX_POSITIONS,
        initializer_range=INIT_STD * (TINY_HIDDEN / hidden) ** 0.5,  # the same activation scale at any width
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.float32).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=False,
    )
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def tiny_model_command(folder: Path) -> None:
    """``park tiny-model DIR``: build the model and say where it is; a bad DIR is an error, not a
    traceback."""
    import time

    import typer

    target = Path(folder).expanduser()
    if target.exists() and not target.is_dir():
        typer.echo(f"error: {target} exists and is not a folder", err=True)
        raise typer.Exit(2)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one line of output, not a progress bar for a 0.5 MB file
    started = time.monotonic()
    try:
        built = build_tiny_llama(target)
    except OSError as err:
        typer.echo(f"error: cannot write the model to {target}: {err}", err=True)
        raise typer.Exit(1) from None
    size_kib = sum(f.stat().st_size for f in built.iterdir() if f.is_file()) / 1024
    typer.echo(f"tiny Llama written to {built} ({size_kib:.0f} KiB, {time.monotonic() - started:.1f} s); "
               f"serve it with source: file://{built}")
