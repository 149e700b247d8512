"""The tiny random Llama: built offline, deterministic, loadable by transformers, with a working tokenizer and
chat template, and `park tiny-model DIR` writes it. (vLLM loading it is proven in test_serve.py.)"""

from __future__ import annotations

import pytest
import torch
from park.workloads.serve import tiny
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from park.cli import app

EXPECTED_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "generation_config.json"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny.build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


def test_build_writes_a_hugging_face_model_folder(model_dir):
    written = {p.name for p in model_dir.iterdir()}
    assert EXPECTED_FILES <= written, f"missing: {EXPECTED_FILES - written}"


def test_config_is_the_tiny_shape(model_dir):
    config = AutoConfig.from_pretrained(model_dir)
    assert config.model_type == "llama"
    assert (config.hidden_size, config.num_hidden_layers) == (tiny.TINY_HIDDEN, tiny.TINY_LAYERS)
    # vLLM's CPU attention kernels support head sizes 32 and up (16 fails at engine start)
    assert config.hidden_size // config.num_attention_heads >= 32


def test_same_seed_gives_identical_weights_and_another_seed_differs(model_dir, tmp_path):
    again = tiny.build_tiny_llama(tmp_path / "again")
    other = tiny.build_tiny_llama(tmp_path / "other", seed=tiny.TINY_SEED + 1)
    first = load_file(model_dir / "model.safetensors")
    second = load_file(again / "model.safetensors")
    third = load_file(other / "model.safetensors")
    assert first.keys() == second.keys() == third.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], third[k]) for k in first)
    assert (again / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()


def test_building_leaves_the_callers_random_state_alone(tmp_path):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    tiny.build_tiny_llama(tmp_path / "m")
    assert torch.equal(torch.rand(3), expected)


def test_tokenizer_round_trips_ascii_text_and_starts_with_bos(tokenizer):
    text = "Hello, world! The PARK stack serves {json} at 100% on port 8000.\nNext line."
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_characters_outside_the_alphabet_become_unk(tokenizer):
    ids = tokenizer("café", add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id in ids


def test_every_token_decodes_to_alphabet_text(tokenizer):
    """Whatever the random model emits, the text is plain ASCII: no half UTF-8 sequences to stream."""
    special = set(tokenizer.all_special_ids)
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        assert set(text) <= set(tiny.ALPHABET), f"token {token_id} decodes to {text!r}"


def test_chat_template_renders_roles_and_generation_prompt(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<s><|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    role_ids = [tokenizer.convert_tokens_to_ids(t) for t in tiny.ROLE_TOKENS]
    assert all(role in ids for role in role_ids), "role markers must be single special tokens"


def test_transformers_generates_greedily_and_deterministically(model_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    first = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    second = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert torch.equal(first, second)
    assert first.shape[1] > inputs["input_ids"].shape[1]


def test_next_token_logits_are_well_separated(model_dir, tokenizer):
    """Greedy equality with vLLM relies on the top two logits being far apart compared to float32
    rounding differences between kernels; the larger init makes them so."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    inputs = tokenizer("Ray Serve routes each request", return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=16, do_sample=False, output_logits=True,
                                return_dict_in_generate=True)
    gaps = [float(step[0].topk(2).values.diff().abs()) for step in output.logits]
    assert min(gaps) > 1e-3, f"top-2 logit gaps {gaps}"


def test_cli_writes_the_model(tmp_path):
    result = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "cli-model")])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "cli-model") in result.output
    assert EXPECTED_FILES <= {p.name for p in (tmp_path / "cli-model").iterdir()}


def test_cli_refuses_a_file_as_target(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    result = CliRunner().invoke(app, ["tiny-model", str(target)])
    assert result.exit_code == 2
    assert "is not a folder" in result.output
    assert target.read_text() == "not a folder"
