"""Automatic template generation: fast == reference, valid output, forbidden tokens, greedy equivalence."""
from __future__ import annotations

import json
import random

import pytest
import torch

from autoprompt_search import models as models_mod
from autoprompt_search.auto_template import base as base_mod
from autoprompt_search.auto_template import beam as beam_mod
from autoprompt_search.auto_template import causal as causal_mod
from autoprompt_search.auto_template import formats as formats_mod
from autoprompt_search.errors import UserError
from autoprompt_search.auto_template import (
    CausalGenerator,
    GeneratedTemplate,
    T5Generator,
    default_forbidden_token_ids,
    load_generated_templates,
    save_templates,
)
from autoprompt_search.tasks import Example, get_task, task_names
from autoprompt_search.prompts import Template

WORDS = ("the movie was great and fun a terrible film it bad is good story very not boring plot "
         "actors yes no maybe this one really loved hated").split()
LABEL_WORDS = ["great", "terrible", "Yes", "No", "Maybe", "good", "bad", "okay", "correct", "incorrect"]


def _sentence(rng: random.Random, low: int = 3, high: int = 9) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    return " ".join(words) + rng.choice([".", "!", " ."])


def _corpus(rng: random.Random, n: int = 400) -> list[str]:
    return [_sentence(rng) + " " + rng.choice(LABEL_WORDS) + " " + _sentence(rng) for _ in range(n)]


@pytest.fixture(scope="module")
def t5_tokenizer(tmp_path_factory):
    import sentencepiece as spm
    from transformers import T5Tokenizer

    folder = tmp_path_factory.mktemp("t5tok")
    (folder / "corpus.txt").write_text("\n".join(_corpus(random.Random(0))))
    spm.SentencePieceTrainer.train(input=str(folder / "corpus.txt"), model_prefix=str(folder / "spiece"),
                                   vocab_size=90, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, minloglevel=2)
    return T5Tokenizer.from_pretrained(str(folder), extra_ids=8)


def _span_training_pair(tok, rng: random.Random) -> tuple[list[int], list[int]]:
    """A T5 denoising pair shaped like the generator's inputs, so the tiny model learns to close spans."""
    enc = lambda text: tok(text, add_special_tokens=False).input_ids  # noqa: E731
    s = [tok.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(3)]
    span1 = enc(" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 2)))) if rng.random() < .8 else []
    span2 = enc(rng.choice(WORDS) + ".") if rng.random() < .7 else enc(".")
    source = enc(_sentence(rng)) + [s[0]] + enc(" " + rng.choice(LABEL_WORDS)) + [s[1], tok.eos_token_id]
    target = [s[0]] + span1 + [s[1]] + span2 + [s[2], tok.eos_token_id]
    return source, target


@pytest.fixture(scope="module")
def t5_model(t5_tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=len(t5_tokenizer), d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=2, d_kv=16, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                      dropout_rate=0.0)
    model = T5ForConditionalGeneration(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = random.Random(1)
    for _ in range(40):
        pairs = [_span_training_pair(t5_tokenizer, rng) for _ in range(16)]
        sources, _ = models_mod.pad_sequences([p[0] for p in pairs], 0)
        targets, target_mask = models_mod.pad_sequences([p[1] for p in pairs], 0)
        labels = targets.masked_fill(target_mask == 0, -100)
        loss = model(input_ids=sources, attention_mask=(sources != 0).long(), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.double().eval()  # float64: near-ties cannot reorder fast vs reference


@pytest.fixture(scope="module")
def causal_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(_corpus(random.Random(2)) + ["\n"] * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


@pytest.fixture(scope="module")
def causal_model(causal_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(causal_tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512)
    model = LlamaForCausalLM(config)
    # A few steps on "sentence, short text, label word, short text, newline" so that label words and line
    # ends are likely enough for the beam to finish candidates.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = random.Random(4)
    for _ in range(80):
        lines = []
        for _ in range(16):
            label = rng.choice(["great", "terrible", "Yes", "No", "Maybe"])
            lines.append(rng.choice([
                f"{_sentence(rng)} it was {label}{rng.choice(['.', ''])}\n",
                f"{_sentence(rng)} {label}{rng.choice(['.', ''])}\n",
                f"{rng.choice(['', 'It was '])}{label}{rng.choice(['.', ''])} {_sentence(rng).capitalize()}\n",
                f"{_sentence(rng)[:-1].strip()} {label}{rng.choice([',', ''])} {_sentence(rng)}\n",
            ]))
        ids = [[causal_tokenizer.bos_token_id] + causal_tokenizer(line).input_ids for line in lines]
        batch, mask = models_mod.pad_sequences(ids, causal_tokenizer.pad_token_id)
        loss = model(input_ids=batch, attention_mask=mask, labels=batch.masked_fill(mask == 0, -100)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.double().eval()


def _examples(task_name: str, n: int, seed: int = 3) -> list[Example]:
    task, rng = get_task(task_name), random.Random(seed)
    examples = []
    for i in range(n):
        texts = tuple(_sentence(rng) for _ in range(task.num_sentences))
        label = rng.uniform(0, 5) if task.is_regression else task.labels[i % len(task.labels)]
        examples.append(Example(texts, label))
    return examples


def _assert_same(fast: list[GeneratedTemplate], reference: list[GeneratedTemplate]) -> None:
    assert fast, "the search produced no template; the test would prove nothing"
    assert [t.template for t in fast] == [t.template for t in reference]
    assert [t.format for t in fast] == [t.format for t in reference]
    for a, b in zip(fast, reference):
        assert a.score == pytest.approx(b.score, abs=1e-4)


@pytest.mark.parametrize("task_name, fmt, objective", [
    ("SST-2", "A", "mean_logits"), ("SST-2", "B", "mean_logits"), ("RTE", "pair", "mean_logits"),
    ("SST-5", "A", "sum_logprob"),
])
def test_t5_fast_matches_reference(t5_model, t5_tokenizer, task_name, fmt, objective):
    generator = T5Generator(t5_model, t5_tokenizer, beam_width=6, max_steps=7, chunk_size=3, objective=objective)
    examples = _examples(task_name, 7)
    fast = generator.generate(task_name, examples, formats=[fmt], progress=False)
    reference = generator.reference_generate(task_name, examples, formats=[fmt], progress=False)
    _assert_same(fast, reference)
    scores = [t.score for t in fast]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("task_name, fmt", [("SST-2", "A"), ("SST-2", "B"), ("RTE", "pair")])
def test_causal_fast_matches_reference(causal_model, causal_tokenizer, task_name, fmt):
    generator = CausalGenerator(causal_model, causal_tokenizer, beam_width=6, max_steps=6, chunk_size=2,
                                max_span2_tokens=2)
    examples = _examples(task_name, 5)
    fast = generator.generate(task_name, examples, formats=[fmt], progress=False)
    reference = generator.reference_generate(task_name, examples, formats=[fmt], progress=False)
    _assert_same(fast, reference)


def _assert_valid(templates: list[GeneratedTemplate], num_sentences: int) -> None:
    assert len({t.template for t in templates}) == len(templates), "duplicates"
    for generated in templates:
        parsed = Template.parse(generated.template)
        parsed.validate(num_sentences=num_sentences)
        assert sum(p.kind == "mask" for p in parsed.parts) == 1
        assert {p.index for p in parsed.parts if p.kind == "sent"} == set(range(num_sentences))
        assert parsed.to_readable() == generated.readable
        assert Template.parse(generated.readable).to_lmbff() == generated.template


@pytest.mark.parametrize("task_name", task_names())
def test_t5_templates_valid_for_every_task(t5_model, t5_tokenizer, task_name):
    task = get_task(task_name)
    generator = T5Generator(t5_model, t5_tokenizer, beam_width=5, max_steps=6, keep_per_format=3)
    templates = generator.generate(task, _examples(task_name, 2 * task.num_classes), progress=False)
    assert templates
    expected_formats = {"pair"} if task.num_sentences == 2 else {"A", "B"}
    assert {t.format for t in templates} <= expected_formats
    for fmt in expected_formats:
        assert sum(t.format == fmt for t in templates) <= 3
    _assert_valid(templates, task.num_sentences)


def test_causal_templates_valid(causal_model, causal_tokenizer):
    generator = CausalGenerator(causal_model, causal_tokenizer, beam_width=8, max_steps=6)
    for task_name in ("SST-2", "RTE"):
        templates = generator.generate(task_name, _examples(task_name, 4), progress=False)
        assert templates
        _assert_valid(templates, get_task(task_name).num_sentences)


def _candidate_tokens(generator, task_name: str, fmt: str, examples) -> list[tuple[int, ...]]:
    task = get_task(task_name)
    words = base_mod._label_words_of(task, examples, None)
    root, advance, rules = generator._search_parts(task, examples, words, fmt, True)
    candidates = beam_mod._beam_search(root, advance, rules, generator.beam_width, generator.max_steps,
                                       beam_mod._select_fast, "", False)
    return [c.tokens for c in candidates]


def test_forbidden_tokens_never_appear(t5_model, t5_tokenizer):
    examples = _examples("SST-2", 6)
    plain = T5Generator(t5_model, t5_tokenizer, beam_width=8, max_steps=7)
    used = [t for tokens in _candidate_tokens(plain, "SST-2", "A", examples) for t in tokens]
    sentinels = {t5_tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(8)}
    frequent = [t for t in sorted(set(used), key=used.count, reverse=True) if t not in sentinels][:3]
    assert frequent
    forbidden = default_forbidden_token_ids(t5_tokenizer, plain.vocab_size) | set(frequent)
    restricted = T5Generator(t5_model, t5_tokenizer, beam_width=8, max_steps=7, forbidden_token_ids=forbidden)
    for tokens in _candidate_tokens(restricted, "SST-2", "A", examples):
        assert not set(tokens) & set(frequent)
        dots = set(formats_mod._dot_ids(restricted.texts))
        assert not any(a in dots and b in dots for a, b in zip(tokens, tokens[1:]))
    assert restricted.generate("SST-2", examples, formats=["A"], progress=False)


def _greedy_t5(model, tokenizer, generator: T5Generator, inputs: list[list[int]]) -> tuple[list[int], float]:
    """Plain greedy decoding of the averaged-logits objective, written independently of the beam search."""
    sentinel = {i: tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(8)}
    eos = tokenizer.eos_token_id
    forbidden = set(default_forbidden_token_ids(tokenizer, generator.vocab_size))
    dots = {i for i, text in enumerate(generator.texts) if text.strip() == "."}
    ids, mask = models_mod.pad_sequences(inputs, 0)
    decoded, span, total = [0, sentinel[0]], 1, 0.0
    for _ in range(generator.max_steps):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask,
                           decoder_input_ids=torch.tensor([decoded] * len(inputs))).logits[:, -1]
        scores = torch.log_softmax(logits.double().mean(0), dim=-1)
        allowed_ends = {sentinel[1]} if span == 1 else {sentinel[2], eos}
        for token in range(len(scores)):
            blocked = (token in forbidden or token in sentinel.values()) and token not in allowed_ends
            if blocked or (decoded[-1] in dots and token in dots):
                scores[token] = float("-inf")
        token = int(scores.argmax())
        decoded.append(token)
        total += float(scores[token])
        if token in allowed_ends:
            span += 1
            if span == 3:
                return decoded[2:], total
    return [], total


def test_beam_width_one_is_greedy(t5_model, t5_tokenizer):
    task, examples = get_task("SST-2"), _examples("SST-2", 6)
    generator = T5Generator(t5_model, t5_tokenizer, beam_width=1, max_steps=10)
    result = generator.generate(task, examples, formats=["A"], progress=False)
    words = base_mod._label_words_of(task, examples, None)
    tokens, score = _greedy_t5(t5_model, t5_tokenizer, generator, generator.encoder_inputs(task, examples, words, "A"))
    assert tokens, "greedy decoding did not finish both spans"
    cut = tokens.index(t5_tokenizer.convert_tokens_to_ids("<extra_id_1>"))
    span1 = "".join(generator.texts[t] for t in tokens[:cut]).replace(" ", "_")
    span2 = "".join(generator.texts[t] for t in tokens[cut + 1:-1]).replace(" ", "_")
    assert [t.template for t in result] == [f"*cls**sent_0*{span1}*mask*{span2}*sep+*"]
    assert result[0].score == pytest.approx(score, abs=1e-9)


def test_t5_inputs_follow_lmbff_formats(t5_model, t5_tokenizer):
    generator = T5Generator(t5_model, t5_tokenizer, beam_width=2, max_steps=2)
    s0, s1 = (t5_tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(2))
    enc = lambda text: t5_tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    single, pair = get_task("SST-2"), get_task("RTE")
    [a] = generator.encoder_inputs(single, [Example(("the movie.",), "1")], ["great"], "A")
    assert a == enc("The movie.") + [s0] + enc(" great") + [s1, t5_tokenizer.eos_token_id]
    [b] = generator.encoder_inputs(single, [Example(("the movie.",), "1")], ["great"], "B")
    assert b == [s0] + enc(" great") + [s1] + enc(" The movie.") + [t5_tokenizer.eos_token_id]
    [p] = generator.encoder_inputs(pair, [Example(("a plot.", "The film"), "entailment")], ["Yes"], "pair")
    assert p == enc("A plot") + [s0] + enc(" Yes") + [s1] + enc(" the film") + [t5_tokenizer.eos_token_id]
    long = Example((" ".join(["movie"] * 400) + " end",), "0")
    [truncated] = generator.encoder_inputs(single, [long], ["terrible"], "A")
    assert len(truncated) == 256 and truncated[-1] == t5_tokenizer.eos_token_id


def test_regression_labels_pick_the_pole(t5_model, t5_tokenizer):
    task = get_task("STS-B")
    words = base_mod._label_words_of(task, [Example(("a", "b"), 0.5), Example(("a", "b"), 4.0)], None)
    assert words == [task.label_words["0"], task.label_words["1"]]


def test_save_and_load_templates(tmp_path, t5_model, t5_tokenizer):
    templates = T5Generator(t5_model, t5_tokenizer, beam_width=4, max_steps=6).generate(
        "SST-2", _examples("SST-2", 4), progress=False)
    assert templates
    txt, json_path = save_templates(templates, tmp_path / "out" / "SST-2.txt")
    assert txt.read_text().splitlines() == [t.template for t in templates]
    assert json.loads(json_path.read_text())["templates"][0]["score"] == templates[0].score
    assert load_generated_templates(json_path) == templates


def test_bad_inputs_raise_user_errors(t5_model, t5_tokenizer, causal_model, causal_tokenizer, tmp_path):
    generator = T5Generator(t5_model, t5_tokenizer, beam_width=2, max_steps=2)
    with pytest.raises(UserError, match="no label"):
        generator.generate("SST-2", [Example(("x.",), None)], progress=False)
    with pytest.raises(UserError, match="expects 2"):
        generator.generate("RTE", [Example(("x.",), "entailment")], progress=False)
    with pytest.raises(UserError, match="formats"):
        generator.generate("SST-2", _examples("SST-2", 2), formats=["pair"], progress=False)
    with pytest.raises(UserError, match="at least one"):
        generator.generate("SST-2", [], progress=False)
    with pytest.raises(UserError, match="objective"):
        T5Generator(t5_model, t5_tokenizer, objective="max")
    causal = CausalGenerator(causal_model, causal_tokenizer, beam_width=2, max_steps=2)
    with pytest.raises(UserError, match="one token"):
        causal.generate("SST-2", _examples("SST-2", 2), label_words={"0": "qqqzzzxxx", "1": "great"},
                        progress=False)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="bad.json"):
        load_generated_templates(tmp_path / "bad.json")


def _improbable_label_search(banked: bool, width: int = 3, steps: int = 6) -> list:
    """A beam search over fixed scores where writing a token costs 1 and placing the label word (ending
    span 1) costs 5: a plain LM finds the label word improbable after most text."""
    vocab = 6
    rules = beam_mod._Rules(torch.zeros((2, vocab), dtype=torch.bool), torch.tensor([], dtype=torch.long),
                            max_span2_tokens=2, banked=banked)

    def scores(items):  # costs grow with the position by irrational steps: no two candidates tie
        ext = torch.stack([-1.0 - 0.1 * torch.arange(vocab, dtype=torch.float64) - 2 ** 0.5 / 100 * len(c.tokens)
                           for c in items])
        end = torch.tensor([-5.0 - 3 ** 0.5 / 1000 * len(c.tokens) if c.stage == beam_mod._SPAN1 else -0.5
                            for c in items], dtype=torch.float64)
        return ext, end

    root = lambda: scores([beam_mod._Candidate((), beam_mod._SPAN1, 0.0)])  # noqa: E731
    advance = lambda parents, items: scores(items)  # noqa: E731
    fast = beam_mod._beam_search(root, advance, rules, width, steps, beam_mod._select_fast, "", False)
    reference = beam_mod._beam_search(root, advance, rules, width, steps, beam_mod._select_reference, "", False)
    assert [(c.tokens, c.score) for c in fast] == [(c.tokens, c.score) for c in reference]
    return fast


def test_improbable_label_word_still_finishes_templates():
    # One shared beam (the old causal search) never places the label word: extending span 1 always
    # looks cheaper, and the last step drops every unfinished candidate.
    assert _improbable_label_search(banked=False) == []
    finished = _improbable_label_search(banked=True)
    assert finished and all(beam_mod.LABEL_MARK in c.tokens and beam_mod.END_MARK in c.tokens for c in finished)
    assert [c.score for c in finished] == sorted((c.score for c in finished), reverse=True)
    # The best finished candidate places the label word at once and ends right after it (every token costs).
    assert finished[0].tokens == (beam_mod.LABEL_MARK, beam_mod.END_MARK)
    assert finished[0].score == pytest.approx(-5.5)


def _suppress_label_words(model, tokenizer, words, amount: float = 12.0):
    """A copy of the model whose output layer gives the label words a much lower logit everywhere."""
    import copy

    model = copy.deepcopy(model)
    head = model.get_output_embeddings()
    ids = [tokenizer(" " + w, add_special_tokens=False).input_ids[0] for w in words]
    with torch.no_grad():
        if head.bias is None:
            head.bias = torch.nn.Parameter(torch.zeros(head.out_features, dtype=head.weight.dtype))
        head.bias[ids] -= amount
    return model


def test_causal_templates_when_label_words_are_improbable(causal_model, causal_tokenizer):
    model = _suppress_label_words(causal_model, causal_tokenizer, ["great", "terrible"])
    generator = CausalGenerator(model, causal_tokenizer, beam_width=4, max_steps=6, max_span2_tokens=2)
    examples = _examples("SST-2", 6)
    fast = generator.generate("SST-2", examples, formats=["A"], progress=False)
    _assert_same(fast, generator.reference_generate("SST-2", examples, formats=["A"], progress=False))
    _assert_valid(fast, 1)


@pytest.mark.parametrize("max_batch_rows,max_batch_tokens", [(1, 32768), (5, 32768), (7, 32768), (1024, 1),
                                                            (1024, 200), (6, 150)])
def test_causal_fast_matches_reference_in_small_row_groups(causal_model, causal_tokenizer, max_batch_rows,
                                                           max_batch_tokens):
    # Groups smaller than one item's examples, groups that cut the prefix groups, ragged last groups, and
    # groups cut by the token budget (which changes from step to step as items and generated tokens grow).
    generator = CausalGenerator(causal_model, causal_tokenizer, beam_width=3, max_steps=6, chunk_size=4,
                                max_span2_tokens=2, max_batch_rows=max_batch_rows,
                                max_batch_tokens=max_batch_tokens)
    examples = _examples("RTE", 7, seed=5)
    fast = generator.generate("RTE", examples, formats=["pair"], progress=False)
    _assert_same(fast, generator.reference_generate("RTE", examples, formats=["pair"], progress=False))


def test_causal_token_budget_bounds_every_forward(causal_model, causal_tokenizer):
    generator = CausalGenerator(causal_model, causal_tokenizer, beam_width=3, max_steps=4, max_batch_tokens=120)
    task, examples = get_task("RTE"), _examples("RTE", 7, seed=5)
    prefixes, word_ids, endings = generator.sequences(task, examples, base_mod._label_words_of(task, examples, None),
                                                      "pair")
    state = causal_mod._CausalFastState(generator, prefixes, word_ids, endings)
    for n_items, fed in [(1, 1), (3, 2), (6, 5)]:
        groups = state._groups(n_items, fed)
        assert [i for g in groups for i in g] == list(range(len(prefixes)))
        for g in groups:
            cost = n_items * len(g) * (state.lengths[g.stop - 1] + fed)
            assert len(g) == 1 or cost <= 120
    assert len(state._groups(6, 5)) > 1  # the budget does cut here


def test_causal_root_scores_are_summed_log_probabilities(causal_model, causal_tokenizer):
    """The fast root step against a plain per-example forward: sum over examples of log P(token | prefix)."""
    task, examples = get_task("SST-2"), _examples("SST-2", 5)
    generator = CausalGenerator(causal_model, causal_tokenizer, beam_width=2, max_steps=2)
    words = base_mod._label_words_of(task, examples, None)
    prefixes, word_ids, endings = generator.sequences(task, examples, words, "A")
    with torch.inference_mode():
        ext, end = causal_mod._CausalFastState(generator, prefixes, word_ids, endings).root()
    expected_ext = torch.zeros(generator.vocab_size, dtype=torch.float64)
    expected_end = 0.0
    with torch.no_grad():
        for prefix, word in zip(prefixes, word_ids):
            log_probs = torch.log_softmax(causal_model(input_ids=torch.tensor([prefix])).logits[0, -1], -1)
            expected_ext += log_probs
            expected_end += float(log_probs[word])
    assert torch.allclose(ext[0], expected_ext, atol=1e-8)
    assert float(end[0]) == pytest.approx(expected_end, abs=1e-8)


@pytest.mark.slow
def test_smollm2_generates_sst2_templates():
    from autoprompt_search.models import load_backbone
    from autoprompt_search.data import load_split

    torch.set_num_threads(1)
    backbone = load_backbone("smollm2-135m", device="cpu")
    task = get_task("SST-2")
    train = load_split(task, "train", k=16, seed=13)
    generator = CausalGenerator(backbone.model, backbone.tokenizer, beam_width=4, max_steps=5)
    templates = generator.generate(task, train, label_words=task.label_words, progress=False)
    assert {t.format for t in templates} == {"A", "B"}
    _assert_valid(templates, 1)


@pytest.mark.parametrize("task_name, fmt, length_normalize", [("SST-2", "A", True), ("RTE", "pair", True),
                                                              ("SST-2", "A", False)])
def test_causal_discriminative_fast_matches_reference(causal_model, causal_tokenizer, task_name, fmt,
                                                      length_normalize):
    generator = CausalGenerator(causal_model, causal_tokenizer, beam_width=5, max_steps=6, chunk_size=2,
                                max_span2_tokens=2, objective="discriminative", fluency_weight=0.3,
                                length_normalize=length_normalize, max_batch_rows=7)
    examples = _examples(task_name, 5)
    fast = generator.generate(task_name, examples, formats=[fmt], progress=False)
    reference = generator.reference_generate(task_name, examples, formats=[fmt], progress=False)
    _assert_same(fast, reference)
    # Not the likelihood ranking: the scores are margins plus a weighted per-token fluency, not sums of logs.
    likelihood = CausalGenerator(causal_model, causal_tokenizer, beam_width=5, max_steps=6, max_span2_tokens=2)
    assert [t.score for t in fast] != [t.score for t in likelihood.generate(task_name, examples, formats=[fmt],
                                                                            progress=False)]


def test_causal_discriminative_formats_and_options(causal_model, causal_tokenizer):
    generator = CausalGenerator(causal_model, causal_tokenizer, beam_width=3, max_steps=4, objective="discriminative")
    templates = generator.generate("SST-2", _examples("SST-2", 4), progress=False)
    assert templates and {t.format for t in templates} == {"A"}  # B: the label word would precede the sentence
    with pytest.raises(UserError, match="format B"):
        generator.generate("SST-2", _examples("SST-2", 4), formats=["B"], progress=False)
    with pytest.raises(UserError, match="objective"):
        CausalGenerator(causal_model, causal_tokenizer, objective="margin")
    with pytest.raises(UserError, match="fluency_weight"):
        CausalGenerator(causal_model, causal_tokenizer, objective="discriminative", fluency_weight=-1.0)
    with pytest.raises(UserError, match="distinct"):
        generator.generate("SST-2", _examples("SST-2", 4), label_words={"0": "great", "1": "great"}, progress=False)
