"""Token embeddings frozen under full fine-tuning (`TrainConfig(embeddings="freeze")`, `--embeddings freeze`):
they keep their pretrained values while every other weight trains, the other weights' gradients are the
ones they get when the embeddings train, a later fit with "train" trains them again, a search records the
setting in its configuration (and a default search keeps the hash of searches made before the setting
existed), and the memory estimates count the frozen weights as copies only."""
from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from conftest import TEST_DEVICE
from test_search import search_options, write_toy_lmbff
from autoprompt_search.cli import main
from autoprompt_search.errors import UserError
from autoprompt_search.models import load_backbone
from autoprompt_search.search import SearchOptions, run_pipeline
from autoprompt_search.search.configs import hashed_train_config
from autoprompt_search.search.leaderboard import Leaderboard
from autoprompt_search.search.parallelism import evaluation_memory, frozen_parameter_count
from autoprompt_search.tasks import get_task
from autoprompt_search.training import PromptClassifier, TrainConfig, count_parameters, token_embedding_weights

SST2 = get_task("SST-2")
BACKBONES = ["tiny_causal_folder", "tiny_gpt2_folder", "tiny_mlm_folder"]


def _classifier(backbone) -> PromptClassifier:
    return PromptClassifier.build(backbone, SST2, SST2.template, SST2.label_words, max_length=48, seed=5)


def _config(**overrides) -> TrainConfig:
    values = dict(steps=3, lr=1e-2, max_length=48, seed=5, eval_every=3, eval_at_start=False, batch_size=4)
    return TrainConfig(**{**values, **overrides})


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _embedding_names(model) -> set[str]:
    frozen = {id(weight) for weight in token_embedding_weights(model)}
    return {name for name, p in model.named_parameters() if id(p) in frozen}


@pytest.mark.parametrize("folder", BACKBONES)
def test_frozen_embeddings_keep_their_values_while_the_rest_trains(request, folder, toy_sentiment):
    train, _ = toy_sentiment
    backbone = load_backbone(str(request.getfixturevalue(folder)), device=TEST_DEVICE)
    model = backbone.model
    embeddings = _embedding_names(model)
    assert model.get_input_embeddings().weight in token_embedding_weights(model)
    before = _weights(model)
    _classifier(backbone).fit(train, None, _config(embeddings="freeze"), progress=False)
    after = _weights(model)
    assert embeddings and all(torch.equal(after[name], before[name]) for name in embeddings)
    changed = {name for name in before if not torch.equal(after[name], before[name])}
    assert changed and not changed & embeddings
    trainable, total = count_parameters(model)
    assert trainable == total - sum(w.numel() for w in token_embedding_weights(model))
    # A later fit that trains them trains them: the frozen state does not outlive its fit.
    _classifier(backbone).fit(train, None, _config(embeddings="train", seed=6), progress=False)
    trained = _weights(model)
    assert any(not torch.equal(trained[name], after[name]) for name in embeddings)
    assert count_parameters(model)[0] == total


def test_an_untied_output_embedding_is_frozen_too(tiny_causal_folder, toy_sentiment):
    train, _ = toy_sentiment
    backbone = load_backbone(str(tiny_causal_folder), device=TEST_DEVICE)
    model = backbone.model
    output = model.get_output_embeddings()
    output.weight = torch.nn.Parameter(output.weight.detach().clone())  # untie
    assert output.weight is not model.get_input_embeddings().weight
    assert len(token_embedding_weights(model)) == 2
    before = output.weight.detach().clone()
    _classifier(backbone).fit(train, None, _config(embeddings="freeze"), progress=False)
    assert torch.equal(output.weight, before)


def test_freezing_leaves_the_other_weights_gradients_as_they_were(tiny_causal_folder, toy_sentiment):
    """One step from the same weights: every other weight moves exactly as when the embeddings train
    (no clipping, whose norm would count the embeddings' gradient)."""
    train, _ = toy_sentiment
    backbone = load_backbone(str(tiny_causal_folder), device=TEST_DEVICE)
    model = backbone.model
    start = {name: value.clone() for name, value in model.state_dict().items()}
    moved = {}
    for mode in ("train", "freeze"):
        model.load_state_dict(start)
        _classifier(backbone).fit(train, None, _config(embeddings=mode, steps=1, max_grad_norm=1e9), progress=False)
        moved[mode] = _weights(model)
    embeddings = _embedding_names(model)
    others = [name for name in moved["train"] if name not in embeddings]
    assert any(not torch.equal(moved["freeze"][name], start[name]) for name in others)
    for name in others:
        torch.testing.assert_close(moved["freeze"][name], moved["train"][name], rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(moved["train"][name], moved["freeze"][name]) for name in embeddings)


@pytest.mark.parametrize("value", ["frozen", "", None, True])
def test_a_bad_mode_is_a_one_line_error_naming_the_field(value, capsys, tmp_path):
    with pytest.raises(UserError, match="field 'embeddings'"):
        TrainConfig.from_dict({"embeddings": value})
    with pytest.raises(UserError, match="embeddings.*expected") as error:
        SearchOptions.from_dict({"task": "sst2", "embeddings": value})
    assert "\n" not in str(error.value)


def test_the_flag_reaches_the_training_settings(capsys, tmp_path):
    assert SearchOptions.from_dict({"task": "sst2", "embeddings": "freeze"}).settings().train["embeddings"] == "freeze"
    assert SearchOptions.from_dict({"task": "sst2"}).settings().train["embeddings"] == "train"
    code = main(["search", "--task", "sst2", "--out", str(tmp_path / "out"), "--embeddings", "frozen"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and "--embeddings" in err[-1]


def test_only_a_changed_mode_enters_the_configuration_hash():
    train = TrainConfig().to_dict()
    assert "embeddings" not in hashed_train_config(train)  # as in every leaderboard made before the setting
    assert hashed_train_config({**train, "embeddings": "freeze"})["embeddings"] == "freeze"


def test_a_search_with_frozen_embeddings_is_a_configuration_of_its_own(tiny_causal_folder, tmp_path):
    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    options = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,), min_steps=1, max_steps=2)
    first = run_pipeline(options, say=lambda *_: None)
    board = Leaderboard(tmp_path / "out" / "leaderboard.sqlite")
    (plain_hash,) = board.config_hashes()
    assert "embeddings" not in board.config(plain_hash)["settings"]["train"]
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "out", copy)
    again = run_pipeline(replace(options, out=str(copy), embeddings="train"), say=lambda *_: None)
    assert again.n_evaluated == 0  # the explicit default is the search stored before
    frozen = run_pipeline(replace(options, out=str(copy), embeddings="freeze"), say=lambda *_: None)
    assert frozen.n_reused == 0 and frozen.n_evaluated == first.n_evaluated
    hashes = Leaderboard(copy / "leaderboard.sqlite").config_hashes()
    (frozen_hash,) = set(hashes) - {plain_hash}
    assert Leaderboard(copy / "leaderboard.sqlite").config(frozen_hash)["settings"]["train"]["embeddings"] == "freeze"


def test_frozen_weights_count_as_copies_only_in_the_memory_estimate(tiny_causal):
    gemma, gemma_embeddings = 268_000_000, 262_144 * 640
    full, frozen = evaluation_memory(gemma), evaluation_memory(gemma, frozen=gemma_embeddings)
    assert frozen < full and full - frozen == 24 * gemma_embeddings
    assert evaluation_memory(gemma, "lora", frozen=gemma_embeddings) == evaluation_memory(gemma, "lora")
    model = tiny_causal.model
    size = sum(w.numel() for w in token_embedding_weights(model))
    assert frozen_parameter_count(model, {"tuning": "full", "embeddings": "freeze"}) == size > 0
    assert frozen_parameter_count(model, {"tuning": "full", "embeddings": "train"}) == 0
    assert frozen_parameter_count(model, {"tuning": "lora", "embeddings": "freeze"}) == 0


def test_weights_the_caller_froze_stay_frozen_either_way(tiny_causal_folder, toy_sentiment):
    train, _ = toy_sentiment
    backbone = load_backbone(str(tiny_causal_folder), device=TEST_DEVICE)
    model = backbone.model
    embeddings = _embedding_names(model)
    name, kept = next((n, p) for n, p in model.named_parameters() if n not in embeddings and p.dim() == 2)
    kept.requires_grad_(False)
    before = kept.detach().clone()
    for mode in ("freeze", "train"):
        _classifier(backbone).fit(train, None, _config(embeddings=mode), progress=False)
        assert not kept.requires_grad and torch.equal(kept, before), (mode, name)
