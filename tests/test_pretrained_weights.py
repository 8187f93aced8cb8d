"""Pretrained weights restored from the model's own safetensors files instead of a copy in memory, and
the fallbacks to a copy where the files cannot stand for the loaded weights."""
from __future__ import annotations

import torch

from autoprompt_search.models import load_backbone
from autoprompt_search.models import WeightsInMemory, WeightsOnDisk, weights_to_restore
from autoprompt_search.prompts import Prompt, Template, Verbalizer
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.training import TrainConfig, evaluate, fine_tune

from conftest import TEST_DEVICE

SST2 = get_task("SST-2")


def _state(model) -> dict:
    return {name: value.clone() for name, value in model.state_dict().items()}


def _scramble(model) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))


def test_weights_loaded_from_a_safetensors_folder_are_restored_from_it_exactly(tiny_causal_folder):
    backbone = load_backbone(str(tiny_causal_folder), device=TEST_DEVICE)
    loaded = _state(backbone.model)
    weights = weights_to_restore(backbone.model)
    assert isinstance(weights, WeightsOnDisk) and weights.tensors() is None
    _scramble(backbone.model)
    weights.restore(backbone.model)
    for name, value in backbone.model.state_dict().items():
        assert torch.equal(value, loaded[name]), name
    # The tied output embedding is not stored separately and still follows the input embedding.
    model = backbone.model
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_weights_that_differ_from_their_files_are_kept_in_memory(tiny_causal_folder):
    backbone = load_backbone(str(tiny_causal_folder), device=TEST_DEVICE)
    with torch.no_grad():
        next(backbone.model.parameters()).mul_(1.5)  # changed after loading: the files no longer hold them
    changed = _state(backbone.model)
    weights = weights_to_restore(backbone.model)
    assert isinstance(weights, WeightsInMemory)
    _scramble(backbone.model)
    weights.restore(backbone.model)
    for name, value in backbone.model.state_dict().items():
        assert torch.equal(value, changed[name]), name


def test_a_model_without_weight_files_is_kept_in_memory(tiny_causal_folder):
    backbone = load_backbone(str(tiny_causal_folder), device=TEST_DEVICE)
    backbone.model.name_or_path = ""
    assert isinstance(weights_to_restore(backbone.model), WeightsInMemory)
    assert isinstance(weights_to_restore(load_backbone(str(tiny_causal_folder), device=TEST_DEVICE).model,
                                         prefer_disk=False), WeightsInMemory)


def test_fine_tuning_that_only_hurts_returns_the_weights_on_disk(tiny_causal_folder, toy_sentiment, tmp_path):
    """The step-0 checkpoint is the weights object itself (no copy): restoring it gives the loaded model."""
    train, _ = toy_sentiment
    prompt = Prompt(Template.parse(SST2.template), Verbalizer.for_task(SST2))
    config = dict(batch_size=8, max_length=48, seed=7)
    # A model that classifies `train` well, saved and loaded again, so that its files hold its weights.
    trained = load_backbone(str(tiny_causal_folder), device=TEST_DEVICE)
    fine_tune(trained, SST2, prompt, train, None, TrainConfig(steps=30, lr=1e-2, **config), progress=False)
    trained.model.save_pretrained(tmp_path)
    trained.tokenizer.save_pretrained(tmp_path)
    backbone = load_backbone(str(tmp_path), device=TEST_DEVICE)
    loaded = _state(backbone.model)
    weights = weights_to_restore(backbone.model)
    assert isinstance(weights, WeightsOnDisk)
    start = evaluate(backbone, SST2, prompt, train, max_length=48, seed=7)
    flipped = [Example(e.texts, "1" if e.label == "0" else "0") for e in train]
    result = fine_tune(backbone, SST2, prompt, flipped, train, TrainConfig(steps=12, lr=1e-2, eval_every=4, **config),
                       progress=False, initial_state=weights)
    assert all(score < start.main for _, score in result.history[1:]), result.history  # the premise
    assert result.best_step == 0 and result.dev.main == start.main
    for name, value in backbone.model.state_dict().items():
        assert torch.equal(value, loaded[name]), name


def test_restore_converts_a_stored_dtype_and_reads_scalars(tmp_path):
    from safetensors.torch import save_file

    layer = torch.nn.Linear(3, 2)
    stored = {"weight": torch.randn(2, 3).to(torch.bfloat16), "bias": torch.randn(2)}
    save_file(stored, str(tmp_path / "w.safetensors"))
    WeightsOnDisk({name: (tmp_path / "w.safetensors", name) for name in stored}).restore(layer)
    assert layer.weight.dtype == torch.float32
    assert torch.equal(layer.weight.data, stored["weight"].float())
    assert torch.equal(layer.bias.data, stored["bias"])
