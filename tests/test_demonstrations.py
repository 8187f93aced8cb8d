"""Demonstration sampling (random / similarity-filtered / in-context) and the sentence-embedding cache."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from autoprompt_search.demonstrations.lengths import DEMO_LENGTH_DEFAULTS
from autoprompt_search.demonstrations import (
    DemonstrationConfig,
    DemonstrationSampler,
    class_index,
    demo_lengths,
    filtered_count,
)
from autoprompt_search.training import in_context_demonstrations
from autoprompt_search.demonstrations import SentenceEncoder, embed_examples, example_text, mean_pool
from autoprompt_search.errors import UserError
from autoprompt_search.tasks import Example, get_task, task_names

WORDS = ("the a movie film story plot was is very quite good great bad awful dull lovely fun boring "
         "dog cat house car city river tree sun rain snow music song book team game").split()


# ---------------------------------------------------------------------------------------------
# fixtures


def labelled_examples(task_name: str, per_class: int, seed: int = 0) -> list[Example]:
    """`per_class` random sentences per class (STS-B: scores on both sides of 2.5)."""
    task = get_task(task_name)
    rng = random.Random(seed)
    examples = []
    for position in range(per_class):
        for class_position, label in enumerate(task.labels):
            texts = tuple(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) + f" {position}"
                          for _ in range(task.num_sentences))
            if task.is_regression:
                score = round(rng.uniform(0.0, 2.5), 2) if class_position == 0 else round(rng.uniform(2.6, 5.0), 2)
                examples.append(Example(texts, score))
            else:
                examples.append(Example(texts, label))
    rng.shuffle(examples)
    return examples


def random_embeddings(count: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    """Unnormalised vectors: the sampler must normalise them itself."""
    return np.random.default_rng(seed).normal(size=(count, dim)) * np.random.default_rng(seed + 1).uniform(0.5, 3, (count, 1))


def numpy_cosine(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    return matrix @ vector / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector))


@pytest.fixture(scope="module")
def tiny_encoder(tiny_encoder_folder):
    return SentenceEncoder(str(tiny_encoder_folder), device="cpu", batch_size=3, show_progress=False)


class CountingEncoder:
    """Wraps an encoder and counts how many times it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.identity, self.calls = inner, inner.identity, 0

    def encode(self, texts):
        self.calls += 1
        return self.inner.encode(texts)


# ---------------------------------------------------------------------------------------------
# one demonstration per class, never the query


@pytest.mark.parametrize("task_name", ["SST-2", "SST-5", "MNLI", "STS-B"])
@pytest.mark.parametrize("mode", ["random", "filtered"])
def test_one_demonstration_per_class_in_class_order(task_name, mode):
    task = get_task(task_name)
    train = labelled_examples(task_name, per_class=5)
    sampler = DemonstrationSampler(train, task, mode, filter_rate=0.5, embeddings=random_embeddings(len(train)))
    rng = random.Random(3)
    for index, query in enumerate(train):
        demos = sampler.draw(query, rng, exclude_index=index)
        assert [class_index(task, demo) for demo in demos] == list(range(task.num_classes))
        assert all(demo in train for demo in demos)


def test_regression_poles_split_at_the_middle_of_the_range():
    task = get_task("STS-B")
    assert [class_index(task, Example(("a", "b"), score)) for score in (0.0, 2.5, 2.51, 5.0)] == [0, 0, 1, 1]
    assert class_index(task, Example(("a", "b"), 3.0), threshold=3.5) == 0


@pytest.mark.parametrize("mode", ["random", "filtered"])
@pytest.mark.parametrize("rng_kind", ["python", "numpy"])
def test_the_query_is_never_its_own_demonstration(mode, rng_kind):
    train = labelled_examples("SST-2", per_class=3)
    # In filtered mode the query's own embedding is the most similar one (cosine 1): only the
    # exclusion keeps it out, even with the smallest filter rate.
    sampler = DemonstrationSampler(train, "SST-2", mode, filter_rate=0.01, embeddings=random_embeddings(len(train)))
    rng = random.Random(0) if rng_kind == "python" else np.random.default_rng(0)
    for index, query in enumerate(train):
        for _ in range(50):
            assert all(demo is not query for demo in sampler.draw(query, rng, exclude_index=index))
        for demos in sampler.draw_inference_sets(query, 20, seed=5, exclude_index=index):
            assert query not in demos


def test_without_exclusion_a_training_query_can_be_drawn():
    """The check above is not vacuous: the most similar example is the query itself."""
    train = labelled_examples("SST-2", per_class=3)
    sampler = DemonstrationSampler(train, "SST-2", "filtered", filter_rate=0.01, embeddings=random_embeddings(len(train)))
    sampler.set_query_embeddings([train[0]], random_embeddings(len(train))[:1])
    own_class = class_index(get_task("SST-2"), train[0])
    assert sampler.draw(train[0], random.Random(0))[own_class] == train[0]


def test_exclude_index_must_point_at_the_query():
    train = labelled_examples("SST-2", per_class=3)
    sampler = DemonstrationSampler(train, "SST-2", "random")
    with pytest.raises(ValueError, match="not the query"):
        sampler.draw(train[0], random.Random(0), exclude_index=1)


# ---------------------------------------------------------------------------------------------
# similarity filtering


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.75, 1.0])
def test_filtered_draws_only_from_the_most_similar_of_each_class(rate):
    task = get_task("SST-5")
    train = labelled_examples("SST-5", per_class=10, seed=1)
    embeddings = random_embeddings(len(train), seed=2)
    queries = labelled_examples("SST-5", per_class=1, seed=9)
    query_embeddings = random_embeddings(len(queries), seed=4)
    sampler = DemonstrationSampler(train, task, "filtered", rate, embeddings=embeddings,
                                   query_embeddings_fn=lambda qs: query_embeddings[[queries.index(q) for q in qs]])
    for query_position, query in enumerate(queries):
        cosine = numpy_cosine(embeddings, query_embeddings[query_position])
        allowed = []
        for class_position in range(task.num_classes):
            members = [i for i, ex in enumerate(train) if class_index(task, ex) == class_position]
            ranked = sorted(members, key=lambda i: -cosine[i])
            allowed.append({train[i] for i in ranked[:int(np.ceil(rate * len(members) - 1e-9))]})
        seen = [set() for _ in allowed]
        for demos in sampler.draw_inference_sets(query, 300, seed=query_position):
            for class_position, demo in enumerate(demos):
                assert demo in allowed[class_position]
                seen[class_position].add(demo)
        assert seen == allowed  # uniform over the kept examples: 300 draws reach all of them


def test_filtered_count_is_a_ceiling_without_float_noise():
    assert [filtered_count(0.3, 10), filtered_count(0.5, 7), filtered_count(0.01, 16), filtered_count(1.0, 16)] == [3, 4, 1, 16]


def test_similarity_ties_go_to_the_lower_training_index():
    train = labelled_examples("SST-2", per_class=4)
    embeddings = np.ones((len(train), 3))  # every example equally similar to anything
    sampler = DemonstrationSampler(train, "SST-2", "filtered", 0.5, embeddings=embeddings)
    candidates = sampler.candidates(train[0], exclude_index=0)
    task = get_task("SST-2")
    for class_position, kept in enumerate(candidates):
        members = [i for i, ex in enumerate(train) if class_index(task, ex) == class_position and i != 0]
        assert kept == members[:len(kept)]


def test_filtered_sampler_with_a_real_encoder_matches_numpy_cosine(tiny_encoder, tmp_path):
    train = labelled_examples("SST-2", per_class=6)
    dev = labelled_examples("SST-2", per_class=2, seed=7)
    config = DemonstrationConfig(mode="filtered", filter_rate=0.34)
    sampler = DemonstrationSampler.from_config(train, "SST-2", config, encoder=tiny_encoder, cache_dir=tmp_path)
    train_vectors = tiny_encoder.encode([example_text(e) for e in train])
    sampler.prepare_queries(dev)
    for query in dev:
        cosine = numpy_cosine(train_vectors, tiny_encoder.encode([example_text(query)])[0])
        for class_position, kept in enumerate(sampler.candidates(query)):
            members = [i for i, ex in enumerate(train) if int(ex.label) == class_position]
            best = sorted(members, key=lambda i: -cosine[i])[:3]  # ceil(0.34 * 6) = 3
            assert sorted(kept) == sorted(best)


# ---------------------------------------------------------------------------------------------
# determinism


def test_inference_sets_are_deterministic_and_vary_with_the_seed():
    train = labelled_examples("SST-5", per_class=8)
    queries = labelled_examples("SST-5", per_class=2, seed=5)
    sampler = DemonstrationSampler(train, "SST-5", "random")
    first = [sampler.draw_inference_sets(q, 4, seed=13) for q in queries]
    again = [sampler.draw_inference_sets(q, 4, seed=13) for q in queries]
    other_seed = [sampler.draw_inference_sets(q, 4, seed=21) for q in queries]
    assert first == again
    assert first != other_seed
    # The four sets of one query are not all the same.
    assert any(len({tuple(s) for s in sets}) > 1 for sets in first)


def test_inference_sets_do_not_depend_on_query_order():
    train = labelled_examples("MNLI", per_class=6)
    queries = labelled_examples("MNLI", per_class=3, seed=5)
    embeddings = random_embeddings(len(train))
    query_vectors = {q: v for q, v in zip(queries, random_embeddings(len(queries), seed=8))}

    def make_sampler():
        return DemonstrationSampler(train, "MNLI", "filtered", 0.5, embeddings=embeddings,
                                    query_embeddings_fn=lambda qs: np.stack([query_vectors[q] for q in qs]))

    forward = make_sampler().draw_for_queries(queries, 3, seed=42)
    backward_sampler = make_sampler()
    backward = [backward_sampler.draw_inference_sets(q, 3, seed=42) for q in reversed(queries)]
    assert forward == list(reversed(backward))


@pytest.mark.parametrize("make_rng", [random.Random, np.random.default_rng])
def test_training_draws_follow_the_given_rng(make_rng):
    train = labelled_examples("TREC", per_class=4)
    sampler = DemonstrationSampler(train, "TREC", "random")

    def run(seed):
        rng = make_rng(seed)
        return [sampler.draw(q, rng, exclude_index=i) for i, q in enumerate(train)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_mode_off_draws_nothing():
    train = labelled_examples("SST-2", per_class=2)
    sampler = DemonstrationSampler(train, "SST-2", "off")
    assert sampler.draw(train[0], random.Random(0), exclude_index=0) == []
    assert sampler.draw_inference_sets(train[0], 3, seed=1) == [[], [], []]


# ---------------------------------------------------------------------------------------------
# sentence encoder and cache


def test_encoder_gives_unit_vectors_that_do_not_depend_on_batch_padding(tiny_encoder):
    texts = ["good movie", "the dog was very dull and the plot was awful rain snow", "cat"]
    together = tiny_encoder.encode(texts)
    alone = np.stack([tiny_encoder.encode([t])[0] for t in texts])
    assert together.shape == (3, tiny_encoder.dimension)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert not np.allclose(together[0], together[2], atol=1e-3)


def test_mean_pooling_ignores_padding_positions():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.allclose(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_pairs_are_embedded_as_the_two_sentences_joined(tiny_encoder):
    pair = Example(("The dog was fun.", "A cat"), "1")
    assert example_text(pair) == "The dog was fun. A cat"
    np.testing.assert_allclose(embed_examples(tiny_encoder, [pair]),
                               tiny_encoder.encode(["The dog was fun. A cat"]), atol=1e-6)


def test_embedding_cache_is_hit_the_second_time(tiny_encoder, tmp_path):
    examples = labelled_examples("MRPC", per_class=3)
    counting = CountingEncoder(tiny_encoder)
    first = embed_examples(counting, examples, tmp_path)
    assert counting.calls == 1 and len(list(tmp_path.glob("*.npy"))) == 1
    second = embed_examples(counting, examples, tmp_path)
    assert counting.calls == 1
    np.testing.assert_array_equal(first, second)
    embed_examples(counting, examples[:-1], tmp_path)  # different texts: a new entry
    assert counting.calls == 2
    counting.identity = tiny_encoder.identity + "|another model"
    embed_examples(counting, examples, tmp_path)  # same texts, other model: a new entry
    assert counting.calls == 3


def test_a_corrupt_cache_file_is_recomputed(tiny_encoder, tmp_path):
    examples = labelled_examples("SST-2", per_class=2)
    counting = CountingEncoder(tiny_encoder)
    expected = embed_examples(counting, examples, tmp_path)
    next(tmp_path.glob("*.npy")).write_bytes(b"not a numpy file")
    np.testing.assert_allclose(embed_examples(counting, examples, tmp_path), expected)
    assert counting.calls == 2


def test_missing_encoder_folder_is_a_user_error():
    with pytest.raises(UserError, match="does not exist"):
        SentenceEncoder("./no-such-encoder-folder")


def test_unreachable_hub_encoder_is_a_user_error_saying_how_to_get_it(monkeypatch):
    import transformers

    def offline(*_args, **_kwargs):
        raise OSError("offline")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(UserError, match="hf download someone/some-encoder"):
        SentenceEncoder("someone/some-encoder")


# ---------------------------------------------------------------------------------------------
# configuration


def test_config_from_dict_fills_defaults_and_normalises_the_mode():
    config = DemonstrationConfig.from_dict({"mode": " Filtered ", "filter_rate": 1})
    assert config.mode == "filtered" and config.filter_rate == 1.0 and config.enabled
    assert config.num_inference_samples == DemonstrationConfig().num_inference_samples
    assert DemonstrationConfig.from_dict(config.to_dict()) == config
    assert not DemonstrationConfig.from_dict(None).enabled


@pytest.mark.parametrize("data, field", [
    ({"mode": "similar"}, "mode"),
    ({"mode": 1}, "mode"),
    ({"filter_rate": 0}, "filter_rate"),
    ({"filter_rate": 1.5}, "filter_rate"),
    ({"filter_rate": "half"}, "filter_rate"),
    ({"filter_rate": True}, "filter_rate"),
    ({"num_inference_samples": 0}, "num_inference_samples"),
    ({"num_inference_samples": 2.5}, "num_inference_samples"),
    ({"encoder": ""}, "encoder"),
    ({"max_demo_sentence_tokens": -3}, "max_demo_sentence_tokens"),
    ({"filter_rat": 0.5}, "filter_rat"),
])
def test_bad_config_is_a_user_error_naming_the_field(data, field):
    with pytest.raises(UserError, match=f"search.toml: demonstrations.*{field}"):
        DemonstrationConfig.from_dict(data, where="search.toml: demonstrations")


def test_bad_sampler_arguments_are_user_errors():
    train = labelled_examples("SST-2", per_class=2)
    with pytest.raises(UserError, match="mode"):
        DemonstrationSampler(train, "SST-2", "nearest")
    with pytest.raises(UserError, match="filter_rate"):
        DemonstrationSampler(train, "SST-2", "filtered", filter_rate=2.0, embeddings=random_embeddings(len(train)))


def test_a_class_without_training_examples_is_a_user_error():
    only_positive = [e for e in labelled_examples("SST-2", per_class=3) if e.label == "1"]
    with pytest.raises(UserError, match="class '0'"):
        DemonstrationSampler(only_positive, "SST-2", "random")


def test_a_class_whose_only_example_is_the_query_is_a_user_error():
    train = [Example(("good",), "1"), Example(("great",), "1"), Example(("bad",), "0")]
    sampler = DemonstrationSampler(train, "SST-2", "random")
    assert len(sampler.draw(train[0], random.Random(0), exclude_index=0)) == 2
    with pytest.raises(UserError, match="at least two"):
        sampler.draw(train[2], random.Random(0), exclude_index=2)


def test_demo_sentence_limit_defaults_to_the_task_table():
    assert set(DEMO_LENGTH_DEFAULTS) == set(task_names())
    mr = demo_lengths("mr")
    assert mr.double_demo and mr.demo_max_length == 2 * mr.max_length
    config = DemonstrationConfig(mode="random")
    assert config.demo_sentence_limit("MR") == mr.other_sent_limit
    assert DemonstrationConfig(mode="random", max_demo_sentence_tokens=7).demo_sentence_limit("MR") == 7


# ---------------------------------------------------------------------------------------------
# in-context baseline


def test_in_context_demonstrations_fill_the_budget_balanced_and_shuffled():
    task = get_task("SST-5")
    train = labelled_examples("SST-5", per_class=8)
    query = Example(("a query sentence",))
    budget = 12
    demos = in_context_demonstrations(query, train, max_count=32, fits=lambda d: len(d) <= budget, seed=1, task=task)
    assert len(demos) == budget and len(set(demos)) == budget
    counts = np.bincount([class_index(task, d) for d in demos], minlength=task.num_classes)
    assert counts.max() - counts.min() <= 1
    classes_in_order = [class_index(task, d) for d in demos]
    assert classes_in_order != sorted(classes_in_order)
    assert classes_in_order[:task.num_classes] != list(range(task.num_classes))  # not the round-robin order


def test_in_context_demonstrations_respect_max_count_a_length_check_and_exclusion():
    train = labelled_examples("SST-2", per_class=30)
    query = train[4]
    unlimited = in_context_demonstrations(query, train, max_count=32, fits=lambda d: True, seed=3, exclude_index=4)
    assert len(unlimited) == 32 and query not in unlimited
    short = in_context_demonstrations(query, train, fits=lambda d: sum(len(e.texts[0]) for e in d) <= 150, seed=3)
    assert sum(len(e.texts[0]) for e in short) <= 150
    assert in_context_demonstrations(query, train, fits=lambda d: False, seed=3) == []


def test_in_context_demonstrations_are_deterministic_per_seed():
    train = labelled_examples("TREC", per_class=6)
    query = Example(("what is the capital",))
    draw = lambda seed: in_context_demonstrations(query, train, max_count=10, fits=None, seed=seed, task="TREC")
    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


# ---------------------------------------------------------------------------------------------
# the real MiniLM encoder


@pytest.mark.slow
def test_minilm_places_paraphrases_closer_than_unrelated_sentences():
    encoder = SentenceEncoder("minilm-l6", device="cpu")
    vectors = encoder.encode([
        "The movie was wonderful and I loved every minute.",
        "I really enjoyed this film, it was great.",
        "The stock market fell sharply on Tuesday.",
        "How many people live in Paris?",
    ])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar = vectors[0] @ vectors[1]
    assert similar > vectors[0] @ vectors[2] and similar > vectors[0] @ vectors[3]
    assert similar > vectors[1] @ vectors[2] and similar > vectors[1] @ vectors[3]


def test_in_context_length_search_finds_the_longest_prefix_that_fits_with_few_checks():
    """The binary search returns what a one-by-one scan over the same prefixes would, the largest
    count that fits, in about log2(max_count) length checks."""
    train = labelled_examples("SST-5", per_class=8)
    query = Example(("a query sentence",))
    everything = in_context_demonstrations(query, train, max_count=32, fits=None, seed=4, task="SST-5")
    for budget in range(0, 400, 7):
        checks = []

        def fits(demos, budget=budget):
            checks.append(len(demos))
            return sum(len(e.texts[0]) for e in demos) <= budget

        chosen = in_context_demonstrations(query, train, max_count=32, fits=fits, seed=4, task="SST-5")
        longest = max(n for n in range(33) if fits(in_context_demonstrations(query, train, n, None, 4, task="SST-5")))
        assert len(chosen) == longest
        assert set(chosen) <= set(everything)
        assert len(checks) - 33 <= 6  # the 33 checks of the scan above, plus the search's own
