"""Template sources that aim at separating the classes: the causal generator's discriminative objective
on a tiny model with planted behaviour, and templates written by the model from an instruction."""
from __future__ import annotations

import random

import pytest
import torch

from autoprompt_search import models as models_mod
from autoprompt_search.auto_template import (
    INSTRUCTION_FORMAT,
    CausalGenerator,
    CausalSampler,
    InstructionGenerator,
    instruction_prompt,
    parse_phrase,
    screen_by_zero_shot,
)
from autoprompt_search.auto_template import base as base_mod
from autoprompt_search.auto_template import beam as beam_mod
from autoprompt_search.prompts import Template
from autoprompt_search.tasks import Example, get_task

POSITIVE = ("wonderful", "lovely", "superb")
NEGATIVE = ("awful", "dull", "boring")
FILLER = "the film movie story was is a very quite and plot".split()


def _sentence(rng: random.Random, label: int) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 3))] + [rng.choice(POSITIVE if label else NEGATIVE)]
    return " ".join(words).capitalize() + " ."


@pytest.fixture(scope="module")
def planted():
    """A tiny causal LM taught that right after a review the label word is a coin flip, but after
    "It was" it is the review's own sentiment (and "It was" follows a review less often than a label
    word does): the likelihood objective prefers the empty span, the discriminative one "It was"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)

    def line() -> str:
        label = rng.randint(0, 1)
        word = ("great" if label else "terrible")
        if rng.random() < 0.3:
            return f"{_sentence(rng, label)} It was {word}\n"
        return f"{_sentence(rng, label)} {rng.choice(['great', 'terrible'])}\n"

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([line() for _ in range(300)], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        ids = [[tokenizer.bos_token_id] + tokenizer(line()).input_ids for _ in range(32)]
        batch, mask = models_mod.pad_sequences(ids, tokenizer.pad_token_id)
        loss = model(input_ids=batch, attention_mask=mask, labels=batch.masked_fill(mask == 0, -100)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    examples = [Example((_sentence(rng, i % 2),), str(i % 2)) for i in range(8)]
    return model.double().eval(), tokenizer, examples


def _path_score(generator, examples, moves, fast: bool) -> float:
    """The beam's score of one candidate walked move by move: a token id, "label" or "end"."""
    task = get_task("SST-2")
    words = base_mod._label_words_of(task, examples, None)
    root, advance, rules = generator._search_parts(task, examples, words, "A", fast,
                                                   base_mod._class_words_of(task, None))
    item = beam_mod._Candidate((), beam_mod._SPAN1, 0.0)
    with torch.inference_mode():
        ext, end = root()
        for move in moves:
            item = rules.end(item, float(end[0])) if move in ("label", "end") else rules.extend(item, move,
                                                                                                float(ext[0, move]))
            if item.stage != beam_mod._DONE:
                ext, end = advance([0], [item])
    return item.score


def _it_was(tokenizer) -> list[int]:
    return tokenizer(" It was", add_special_tokens=False).input_ids


@pytest.mark.parametrize("fast", [True, False])
def test_discriminative_objective_prefers_the_span_that_separates(planted, fast):
    model, tokenizer, examples = planted
    empty, it_was = ["label", "end"], [*_it_was(tokenizer), "label", "end"]
    likelihood = CausalGenerator(model, tokenizer, beam_width=2, max_steps=6)
    assert _path_score(likelihood, examples, empty, fast) > _path_score(likelihood, examples, it_was, fast)
    discriminative = CausalGenerator(model, tokenizer, beam_width=2, max_steps=6, objective="discriminative",
                                     fluency_weight=0.1)
    assert _path_score(discriminative, examples, it_was, fast) > _path_score(discriminative, examples, empty, fast)
    # Without the class margin (fluency only, summed) the shorter span wins again.
    fluency_only = CausalGenerator(model, tokenizer, beam_width=2, max_steps=6, objective="discriminative",
                                   fluency_weight=100.0, length_normalize=False)
    assert _path_score(fluency_only, examples, empty, fast) > _path_score(fluency_only, examples, it_was, fast)


def test_discriminative_beam_finds_the_separating_template(planted):
    model, tokenizer, examples = planted
    kwargs = dict(beam_width=4, max_steps=5, max_span2_tokens=1)
    found = CausalGenerator(model, tokenizer, objective="discriminative", **kwargs).generate(
        "SST-2", examples, formats=["A"], progress=False)
    reference = CausalGenerator(model, tokenizer, objective="discriminative", **kwargs).reference_generate(
        "SST-2", examples, formats=["A"], progress=False)
    assert [t.template for t in found] == [t.template for t in reference]
    assert found[0].template.startswith("*cls**sent_0*_It_was*mask*")
    plain = CausalGenerator(model, tokenizer, **kwargs).generate("SST-2", examples, formats=["A"], progress=False)
    assert not plain[0].template.startswith("*cls**sent_0*_It_was*mask*")


# ---------------------------------------------------------------------------------------------
# Templates written from an instruction

WORDS = ["great", "terrible"]


@pytest.mark.parametrize("reply, expected", [
    ("Overall, the movie was", "*cls**sent_0*_Overall,_the_movie_was*mask*.*sep+*"),
    ("Phrase: \"In short, it is\"\nmore text", "*cls**sent_0*_In_short,_it_is*mask*.*sep+*"),
    ("All in all it felt [label]!", "*cls**sent_0*_All_in_all_it_felt*mask*!*sep+*"),
    ("This film is ___ to watch.", "*cls**sent_0*_This_film_is*mask*_to_watch.*sep+*"),
    ("The review says it was great", "*cls**sent_0*_The_review_says_it_was*mask*.*sep+*"),
    ("", None),                                   # nothing written
    ("great", None),                              # only the label word
    ("It was great or terrible", "*cls**sent_0*_It_was*mask*.*sep+*"),  # cut before the first label word
    ("This is a fine film. It has a plot", "*cls**sent_0*_This_is_a_fine_film*mask*.*sep+*"),  # first sentence
    ("It is ___, not terrible", None),            # a label word after the mask
    ("A *bold* claim that", None),                # characters the syntax cannot hold
    ("snake_case words are", None),
    ("Très bien, c'était", None),                 # outside the characters a template keeps
    (" ".join(["very"] * 20), None),              # too long
])
def test_parse_phrase(reply, expected):
    assert parse_phrase(reply, 1, WORDS) == expected
    if expected is not None:
        Template.parse(expected).validate(num_sentences=1)


def test_parse_phrase_pair_tasks():
    template = parse_phrase("Given both, the answer is", 2, ["Yes", "No"])
    assert template == "*cls**sent_0**+sent_1*_Given_both,_the_answer_is*mask*.*sep+*"
    Template.parse(template).validate(num_sentences=2)


class _StubSampler:
    """Replies chosen by the seed it is given, and a record of the prompts it saw."""

    REPLIES = ["The movie was", "broken * reply", "Overall it felt", "", "great", "In a word, it is",
               "The movie was"]

    def __init__(self):
        self.calls = []

    def __call__(self, prompt, n, seed):
        self.calls.append((prompt, n, seed))
        rng = random.Random(seed)
        return [(rng.choice(self.REPLIES), -rng.random()) for _ in range(n)]


def _toy_train(n: int = 12) -> list[Example]:
    rng = random.Random(5)
    return [Example((_sentence(rng, i % 2),), str(i % 2)) for i in range(n)]


def test_instruction_generator_keeps_valid_templates_and_is_seeded():
    train = _toy_train()
    stub = _StubSampler()
    generator = InstructionGenerator(stub, n_prompts=3, samples_per_prompt=5, examples_per_class=2, seed=7)
    found = generator.generate("SST-2", train)
    assert found and all(t.format == INSTRUCTION_FORMAT for t in found)
    assert len({t.template for t in found}) == len(found)
    assert [t.score for t in found] == sorted((t.score for t in found), reverse=True)
    for item in found:
        Template.parse(item.template).validate(num_sentences=1)
        assert Template.parse(item.readable).to_lmbff() == item.template
    # Every broken reply was seen and dropped, every valid one kept.
    replies = generator.last_replies
    assert len(replies) == 15
    assert {t for _, t in replies if t is not None} == {t.template for t in found}
    assert all(t is None for r, t in replies if r in ("broken * reply", "", "great"))
    assert any(r in ("broken * reply", "", "great") for r, _ in replies)
    # Each prompt shows two examples per class, each text followed by its own label word.
    for prompt, n, _ in stub.calls:
        assert n == 5 and prompt.count("Answer: great") == 2 and prompt.count("Answer: terrible") == 2
    # Same seed: same prompts and templates; another seed: other draws.
    again = InstructionGenerator(_StubSampler(), n_prompts=3, samples_per_prompt=5, examples_per_class=2, seed=7)
    assert again.generate("SST-2", train) == found
    other_stub = _StubSampler()
    InstructionGenerator(other_stub, n_prompts=3, samples_per_prompt=5, examples_per_class=2, seed=8).generate(
        "SST-2", train)
    assert [c[0] for c in other_stub.calls] != [c[0] for c in stub.calls]


def test_instruction_prompt_shows_labelled_examples():
    task = get_task("SST-2")
    shown = [(Example(("A fine film .",), "1"), "great"), (Example(("Dull .",), "0"), "terrible")]
    prompt = instruction_prompt(task, shown)
    assert "Text: A fine film .\nAnswer: great" in prompt and "Text: Dull .\nAnswer: terrible" in prompt


def test_causal_sampler_is_deterministic_for_a_seed(planted):
    model, tokenizer, _ = planted
    sampler = CausalSampler(model, tokenizer, max_new_tokens=6, temperature=1.0, chat=False)
    first = sampler("Movie was wonderful .", 4, seed=3)
    assert len(first) == 4 and all(isinstance(t, str) and s <= 0 for t, s in first)
    assert sampler("Movie was wonderful .", 4, seed=3) == first
    # The first reply is greedy: the same whatever the seed.
    assert sampler("Movie was wonderful .", 4, seed=4)[0] == first[0]


def test_instruction_templates_go_through_zero_shot_screening(tiny_causal, toy_sentiment):
    train, dev = toy_sentiment
    task = get_task("SST-2")
    generator = InstructionGenerator(_StubSampler(), n_prompts=2, samples_per_prompt=4, seed=1)
    found = generator.generate(task, train)
    assert found
    screened = screen_by_zero_shot(tiny_causal, task, found, dev, n=2)
    assert 1 <= len(screened) <= 2 and all("zero_shot_dev" in s and s["format"] == INSTRUCTION_FORMAT
                                           for s in screened)
