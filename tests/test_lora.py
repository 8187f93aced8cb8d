"""LoRA fine-tuning (`TrainConfig(tuning="lora")`): adapters injected in place on the attention/MLP
projections, only they train, they start as the identity, a fit is reproducible from its seed, a saved
classifier is a plain model with the same scores, and the search evaluator undoes a LoRA evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TEST_DEVICE
from test_search import search_options, write_toy_lmbff
from autoprompt_search.cli import main
from autoprompt_search.errors import UserError
from autoprompt_search.models import load_backbone
from autoprompt_search.search import PromptEvaluator, SearchOptions
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.training import (PromptClassifier, TrainConfig, adapter_targets, count_parameters,
                                        has_adapters, prepare_tuning)

SST2 = get_task("SST-2")
BACKBONES = ["tiny_causal_folder", "tiny_gpt2_folder", "tiny_mlm_folder"]


def _fresh(request, folder_fixture: str):
    return load_backbone(str(request.getfixturevalue(folder_fixture)), device=TEST_DEVICE)


def _classifier(backbone, seed: int = 5) -> PromptClassifier:
    return PromptClassifier.build(backbone, SST2, SST2.template, SST2.label_words, max_length=48, seed=seed)


def _lora(**overrides) -> TrainConfig:
    values = dict(tuning="lora", steps=6, lr=1e-2, max_length=48, seed=5, eval_every=3, eval_at_start=False,
                  batch_size=4)
    return TrainConfig(**{**values, **overrides})


def _base_weights(model) -> dict[str, torch.Tensor]:
    """The model's own weights under their original names (a LoRA layer's `base_layer` folded away)."""
    return {name.replace(".base_layer", ""): value.detach().clone() for name, value in model.state_dict().items()
            if "lora_" not in name}


def _adapter_weights(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items() if "lora_" in name}


@pytest.mark.parametrize("folder", BACKBONES)
def test_a_lora_fit_trains_only_the_adapters(request, folder, toy_sentiment):
    train, _ = toy_sentiment
    backbone = _fresh(request, folder)
    model_class, before = type(backbone.model), _base_weights(backbone.model)
    targets = adapter_targets(backbone.model)
    leaves = {name.rsplit(".", 1)[-1] for name in targets}
    assert leaves & {"q_proj", "c_attn", "query"} and leaves & {"down_proj", "c_fc", "dense"}  # attention and MLP
    assert backbone.model.get_output_embeddings() not in [backbone.model.get_submodule(t) for t in targets]
    _classifier(backbone).fit(train, None, _lora(), progress=False)
    assert type(backbone.model) is model_class and has_adapters(backbone.model)
    trainable = {name for name, p in backbone.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    after = _base_weights(backbone.model)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)  # bit-identical base weights
    assert any(value.abs().sum() > 0 for name, value in _adapter_weights(backbone.model).items() if "lora_B" in name)
    trained, total = count_parameters(backbone.model)
    assert 0 < trained < total


@pytest.mark.parametrize("folder", BACKBONES)
def test_untrained_adapters_score_as_the_plain_model(request, folder, toy_sentiment):
    _, dev = toy_sentiment
    backbone = _fresh(request, folder)
    plain = _classifier(backbone).scores(dev)
    prepare_tuning(backbone.model, _lora(seed=11))
    assert has_adapters(backbone.model)
    np.testing.assert_array_equal(_classifier(backbone).scores(dev), plain)


def _training_loss(classifier: PromptClassifier, examples) -> float:
    scores = torch.as_tensor(classifier.scores(examples))
    return F.cross_entropy(scores, torch.tensor([SST2.label_index(e.label) for e in examples])).item()


@pytest.mark.parametrize("folder", ["tiny_causal_folder", "tiny_mlm_folder"])
def test_a_lora_fit_lowers_the_training_loss(request, folder, toy_sentiment):
    train, _ = toy_sentiment
    classifier = _classifier(_fresh(request, folder))
    before = _training_loss(classifier, train)
    result = classifier.fit(train, None, _lora(steps=24), progress=False)
    assert result.steps == 24
    assert _training_loss(classifier, train) < before - 0.05


def test_the_same_seed_gives_the_same_adapters(request, toy_sentiment):
    train, dev = toy_sentiment
    runs = {}
    for name, seed in (("first", 7), ("again", 7), ("other", 8)):
        backbone = _fresh(request, "tiny_causal_folder")
        _classifier(backbone).fit(train, dev, _lora(seed=seed), progress=False)
        runs[name] = _adapter_weights(backbone.model)
    assert all(torch.equal(runs["first"][k], runs["again"][k]) for k in runs["first"])
    assert not all(torch.equal(runs["first"][k], runs["other"][k]) for k in runs["first"])


def test_a_second_fit_starts_from_fresh_adapters(request, toy_sentiment):
    train, _ = toy_sentiment
    once = _fresh(request, "tiny_causal_folder")
    _classifier(once).fit(train, None, _lora(seed=3), progress=False)
    twice = _fresh(request, "tiny_causal_folder")
    _classifier(twice).fit(train, None, _lora(seed=9), progress=False)
    _classifier(twice).fit(train, None, _lora(seed=3), progress=False)  # reuses the adapters, re-drawn from seed 3
    first, second = _adapter_weights(once.model), _adapter_weights(twice.model)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_a_new_rank_replaces_the_adapters_and_full_tuning_refuses_them(request, toy_sentiment):
    train, _ = toy_sentiment
    backbone = _fresh(request, "tiny_causal_folder")
    classifier = _classifier(backbone)
    classifier.fit(train, None, _lora(lora_rank=2, steps=1), progress=False)
    ranks = {v.shape[0] for k, v in _adapter_weights(backbone.model).items() if "lora_A" in k}
    classifier.fit(train, None, _lora(lora_rank=4, steps=1), progress=False)
    assert ranks == {2} and {v.shape[0] for k, v in _adapter_weights(backbone.model).items() if "lora_A" in k} == {4}
    with pytest.raises(UserError, match="tuning 'full'.*LoRA adapters"):
        classifier.fit(train, None, TrainConfig(steps=1, max_length=48), progress=False)


@pytest.mark.parametrize("folder", ["tiny_causal_folder", "tiny_gpt2_folder", "tiny_mlm_folder"])
def test_a_saved_lora_classifier_is_a_plain_model_with_the_same_scores(request, folder, toy_sentiment, tmp_path):
    train, dev = toy_sentiment
    classifier = _classifier(_fresh(request, folder))
    untrained = classifier.scores(dev)
    classifier.fit(train, None, _lora(), progress=False)
    tuned = classifier.scores(dev)
    assert not np.allclose(tuned, untrained, atol=1e-4)
    saved = classifier.save_pretrained(tmp_path / "saved", backbone_name="tiny")
    np.testing.assert_array_equal(classifier.scores(dev), tuned)  # saving put the LoRA layers back
    assert has_adapters(classifier.backbone.model)
    reloaded = PromptClassifier.from_pretrained(saved, device=TEST_DEVICE)
    assert not has_adapters(reloaded.backbone.model)
    assert not any("lora_" in name or "base_layer" in name for name in reloaded.backbone.model.state_dict())
    np.testing.assert_allclose(reloaded.scores(dev), tuned, atol=1e-5)


def test_the_evaluator_undoes_a_lora_evaluation(tiny_causal_folder, tmp_path):
    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    options = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,), tuning="lora", lora_rank=4)
    settings = options.settings()
    assert settings.train["tuning"] == "lora" and settings.train["lora_rank"] == 4
    settings.train["eval_at_start"] = False  # keep the trained adapters even when the toy dev does not improve
    evaluator = PromptEvaluator(settings)
    state = evaluator.load_state()
    assert state.pristine is None  # no copy of the weights: LoRA never changes them
    candidate = {"template": SST2.template, "label_words": {"0": "awful", "1": "wonderful"}, "demonstrations": "off"}
    zero_shot = evaluator.evaluate_with(state, candidate, 13, 0)
    first = evaluator.evaluate_with(state, candidate, 13, 3)
    again = evaluator.evaluate_with(state, candidate, 13, 3)
    assert has_adapters(state.backbone.model)
    assert (again.dev_metric, again.test_metric, again.extra) == (first.dev_metric, first.test_metric, first.extra)
    assert first.extra["dev_score"] != zero_shot.extra["dev_score"]  # the 3 steps did train
    after = evaluator.evaluate_with(state, candidate, 13, 0)  # adapters reset: the pretrained model's scores
    assert (after.dev_metric, after.extra) == (zero_shot.dev_metric, zero_shot.extra)


def test_lora_changes_the_configuration_of_a_search(tiny_causal_folder, tmp_path):
    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    full = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,)).settings()
    lora = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,), tuning="lora").settings()
    assert full.train["tuning"] == "full" and full.train != lora.train
    assert PromptEvaluator(full).state_key() != PromptEvaluator(lora).state_key()


@pytest.mark.parametrize("values, field", [({"lora_rank": 0}, "lora_rank"), ({"tuning": "qlora"}, "tuning"),
                                           ({"lora_alpha": float("nan")}, "lora_alpha"),
                                           ({"lora_dropout": 1.0}, "lora_dropout"), ({"lora_rank": 2.0}, "lora_rank")])
def test_bad_lora_settings_are_one_line_errors_naming_the_field(values, field):
    with pytest.raises(UserError, match=f"field '{field}'") as error:
        TrainConfig.from_dict(values)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("values, field", [({"lora_rank": 0}, "lora_rank"), ({"tuning": "qlora"}, "tuning"),
                                           ({"lora_alpha": 0.0}, "lora_alpha")])
def test_bad_search_options_name_the_field(values, field):
    with pytest.raises(UserError, match=f"field '{field}'.*expected") as error:
        SearchOptions.from_dict({"task": "sst2", **values})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("args, flag", [(["--lora-rank", "0"], "--lora-rank"), (["--lora-alpha", "-1"], "--lora-alpha")])
def test_bad_lora_flags_name_the_flag(args, flag, capsys, tmp_path):
    code = main(["search", "--task", "sst2", "--out", str(tmp_path / "out"), *args])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(err) == 1 and flag in err[0]


def test_a_lora_search_exports_a_plain_model_with_the_searched_scores(tiny_causal_folder, tmp_path):
    from test_search import search_cli_args
    from autoprompt_search.prompts import read_document
    from autoprompt_search.search import EvaluatorSettings, Leaderboard, fine_tuned_classifier

    data = write_toy_lmbff(tmp_path / "data", seeds=(13, 21))
    out = tmp_path / "out"
    assert main(["search", *search_cli_args(tiny_causal_folder, data, out, "--tuning", "lora", "--lora-rank", "2")]) == 0
    assert main(["export", "--out", str(out), "--fine-tune"]) == 0
    document = read_document(out / "best.json").document
    config = Leaderboard(out / "leaderboard.sqlite").config(document["found_by"]["config_hash"])
    settings = EvaluatorSettings(**config["settings"])
    assert settings.train["tuning"] == "lora" and settings.train["lora_rank"] == 2
    candidate = {"template": document["template"]["lmbff"], "label_words": document["label_words"],
                 "demonstrations": document["demonstrations"]["mode"]}
    in_memory = fine_tuned_classifier(settings, candidate, document["found_by"]["seeds"][0], document["found_by"]["steps"])
    assert has_adapters(in_memory.backbone.model)
    from_file = PromptClassifier.from_pretrained(out / "best.json", device=TEST_DEVICE)
    assert not has_adapters(from_file.backbone.model)
    texts = [Example((text,)) for text in ("A wonderful film.", "A dull and tedious story.", "The plot was boring.")]
    np.testing.assert_allclose(from_file.probabilities(texts), in_memory.probabilities(texts), atol=1e-5)


def _tiny_family_models():
    """(family, tiny random model, projection names, how many projections its 2 blocks (per stack) have)."""
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, RobertaConfig, RobertaForMaskedLM, T5Config,
                              T5ForConditionalGeneration)

    yield "gemma3", Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16)), {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"}, 2 * 7
    yield "roberta", RobertaForMaskedLM(RobertaConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)), \
        {"query", "key", "value", "dense"}, 2 * 6  # the three "dense" of a layer, not lm_head.dense
    yield "t5", T5ForConditionalGeneration(T5Config(
        vocab_size=64, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)), {"q", "k", "v", "o", "wi", "wo"}, \
        2 * 6 + 2 * 10  # encoder blocks: self-attention + MLP; decoder blocks: cross-attention too


def test_every_family_gets_adapters_on_its_block_projections_only():
    for family, model, leaves, count in _tiny_family_models():
        targets = adapter_targets(model)
        assert {t.rsplit(".", 1)[-1] for t in targets} == leaves and len(targets) == count, family


def _lora_modules(model):
    from peft.tuners.lora import LoraLayer

    return [module for module in model.modules() if isinstance(module, LoraLayer)]


@pytest.mark.parametrize("folder", BACKBONES)
def test_bf16_lora_holds_frozen_projections_in_bf16_with_the_same_results(request, folder, toy_sentiment, monkeypatch):
    """Frozen projections cast once, inputs not cast up to fp32: the same losses, dev scores and adapters
    as autocast's casts in every pass; the fp32 weights come back unchanged, as the same tensors."""
    import contextlib

    import autoprompt_search.training.trainer as trainer
    from autoprompt_search.training import adapted_projections_in

    train, dev = toy_sentiment
    config = _lora(precision="bf16", eval_at_start=True)
    backbone = _fresh(request, folder)
    prepare_tuning(backbone.model, config)
    base = {name: p for name, p in backbone.model.named_parameters() if name.endswith("base_layer.weight")}
    storages = {name: p.data_ptr() for name, p in base.items()}
    with adapted_projections_in(backbone.model, torch.bfloat16) as converted:
        assert converted == len(base) > 0 and all(p.dtype == torch.bfloat16 for p in base.values())
        assert not any(layer.cast_input_dtype_enabled for layer in _lora_modules(backbone.model))
    assert all(p.dtype == torch.float32 and p.data_ptr() == storages[name] for name, p in base.items())
    assert all(layer.cast_input_dtype_enabled for layer in _lora_modules(backbone.model))

    seen = []
    real = trainer.adapted_projections_in

    def recording(model, dtype):
        seen.append(dtype)
        return real(model, dtype)

    monkeypatch.setattr(trainer, "adapted_projections_in", recording)
    before = _base_weights(backbone.model)
    cast_once = _classifier(backbone).fit(train, dev, config, progress=False)
    adapters_once = _adapter_weights(backbone.model)
    assert seen == [torch.bfloat16]
    after = _base_weights(backbone.model)
    assert all(torch.equal(after[name], before[name]) and after[name].dtype == torch.float32 for name in before)

    monkeypatch.setattr(trainer, "adapted_projections_in", lambda model, dtype: contextlib.nullcontext(0))
    cast_every_pass = _classifier(backbone).fit(train, dev, config, progress=False)
    assert cast_once.train_losses == cast_every_pass.train_losses
    assert [s for _, s in cast_once.history] == [s for _, s in cast_every_pass.history]
    adapters_every_pass = _adapter_weights(backbone.model)
    assert all(torch.equal(adapters_once[name], adapters_every_pass[name]) for name in adapters_once)


def test_fp32_and_full_tuning_leave_the_weights_in_fp32(request, toy_sentiment, monkeypatch):
    import autoprompt_search.training.trainer as trainer

    train, _ = toy_sentiment
    seen = []
    monkeypatch.setattr(trainer, "adapted_projections_in", lambda model, dtype: seen.append(dtype))
    backbone = _fresh(request, "tiny_causal_folder")
    _classifier(backbone).fit(train, None, _lora(precision="fp32", steps=2), progress=False)
    _classifier(_fresh(request, "tiny_causal_folder")).fit(train, None, TrainConfig(steps=2, precision="bf16",
                                                                                     max_length=48), progress=False)
    assert seen == []
