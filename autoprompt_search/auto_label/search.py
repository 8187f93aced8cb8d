"""Label search with a backbone: zero-shot log-probabilities at the label position and the whole LM-BFF
"auto L" search (candidates, then the exact top-n assignments of one word per class).

The steps, after Gao, Fisch & Chen (2021):

1. Zero-shot log-probabilities of every vocabulary token at the label position, one row per training
   example (`zero_shot_label_logprobs`). For each class, the k allowed tokens with the largest summed
   log-probability over that class's examples are its candidates (`candidate_words`). Optionally the
   candidates of each class are first restricted to the nearest neighbours of a seed word
   (`nearest_neighbour_filter`, LM-BFF's TREC setting).
2. An assignment picks one candidate per class, no word shared by two classes. It is scored by
   zero-shot accuracy on the training set: an example is right when its gold class's word has a
   strictly larger log-probability than every other class's word (a tie counts as wrong). The top n
   are found exactly by branch and bound (`top_assignments`), never by enumerating the k^C product.
   For a regression task (STS-B) the labels are binarised at the median for step 1 and the two-word
   assignments are scored by the Pearson correlation between p(high pole) and the gold score.
3. The engine fine-tunes each of the n assignments and re-ranks them on dev (not done here).

Two options aim the words at separating the classes (both off by default, so LM-BFF's search and
earlier results are unchanged): `ranking="pmi"` picks candidates by class-conditional PMI instead of
raw log-probability (which favours words likely for every input), and `whole_words=True` (causal
backbones) re-scores each class's candidates as whole words with the classifier's own scoring
(`whole_word_scores`) and ranks and assigns them on those scores.
"""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..tasks import Example, TaskSpec
from ..prompts import Template, Verbalizer, single_token_ids, word_in_context
from .candidates import RANKINGS, binarise_at_median, candidate_words, nearest_neighbour_filter, neighbour_masks
from .exact import top_assignments
from .results import Assignment, LabelSearchResult
from .whole_words import whole_word_scores


@torch.no_grad()
def zero_shot_label_logprobs(backbone, task: TaskSpec, template: Template, examples: Sequence[Example], *,
                             batch_size: int = 32, max_length: int | None = None,
                             progress: bool = True) -> torch.Tensor:
    """Full-vocabulary log-probabilities at the label position of each example's prompt, [N, V] on the
    CPU in the examples' order. The prompt is built with the task's manual verbalizer only because
    the backbone's encoder asks for one; what precedes the label position does not depend on it."""
    if not examples:
        raise UserError(f"label search for {task.name} needs training examples; got none")
    verbalizer = Verbalizer.for_task(task)
    encoded = [backbone.encode(example, template, verbalizer, max_length=max_length) for example in examples]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))  # little padding per batch
    was_training = backbone.model.training
    backbone.train(False)
    rows: dict[int, torch.Tensor] = {}
    try:
        for offset in tqdm(range(0, len(order), batch_size), desc="zero-shot log-probs", leave=False,
                           disable=not progress):
            chunk = order[offset:offset + batch_size]
            logprobs = backbone.label_position_logprobs(backbone.collate([encoded[i] for i in chunk]))
            rows.update(zip(chunk, logprobs.float().cpu()))
    finally:
        backbone.train(was_training)
    return torch.stack([rows[i] for i in range(len(examples))])


def input_independent(logprobs: torch.Tensor, atol: float = 1e-6) -> bool:
    """True when every row equals the first one: the prompt's label position does not see the input.
    Every assignment then has the same kind of score and the search bound cannot prune."""
    return len(logprobs) > 1 and bool(torch.allclose(logprobs, logprobs[:1].expand_as(logprobs), atol=atol, rtol=0))


def _targets(task: TaskSpec, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """(pole or class index per example for picking candidates, target for scoring assignments)."""
    missing = [i for i, e in enumerate(examples) if e.label is None]
    if missing:
        raise UserError(f"label search needs labelled training examples; examples {missing[:5]} have no label")
    if task.is_regression:
        gold = torch.tensor([float(e.label) for e in examples], dtype=torch.float64)
        return binarise_at_median(gold), gold
    classes = torch.tensor([task.label_index(e.label) for e in examples], dtype=torch.long)
    return classes, classes


def _seed_word_ids(backbone, task: TaskSpec, seed_words) -> list[int]:
    verbalizer = seed_words if isinstance(seed_words, Verbalizer) else Verbalizer.from_mapping(
        task, seed_words, source="seed words")
    first_words = Verbalizer(verbalizer.labels, verbalizer.words)  # one seed per class: its first word
    if getattr(backbone, "kind", None) == "causal":
        # A causal backbone's candidates are first tokens, so a word of several tokens is seeded by its first.
        return [backbone.tokenizer(word_in_context(word, "x"), add_special_tokens=False)["input_ids"][0]
                for word in first_words.words]
    return single_token_ids(backbone.tokenizer, first_words)


def _pmi_pool(ranking: str, k: int, pool: int | None) -> int | None:
    """PMI over the whole vocabulary is held by rare tokens; by default it ranks the 10k tokens of
    largest class log-probability (see `candidate_words`)."""
    return (pool if pool is not None else 10 * k) if ranking == "pmi" else None


def _word_columns(first_token: list[list[int]], extra: list[list[str]], id_to_word):
    """Distinct words of each class's candidates: (words, token id of each word, per-class columns).
    A token whose word is already listed shares that column; an extra word (given as text, perhaps
    several tokens) gets a negative id, -1, -2, ..., as it is no single vocabulary entry."""
    words: list[str] = []
    ids: list[int] = []
    where: dict[str, int] = {}
    columns = []
    for tokens, texts in zip(first_token, extra):
        mine: list[int] = []
        for token, text in [(t, id_to_word(t)) for t in tokens] + [(None, w.strip()) for w in texts]:
            if not text:
                continue
            if text not in where:
                where[text] = len(words)
                words.append(text)
                ids.append(int(token) if token is not None else -(sum(i < 0 for i in ids) + 1))
            if where[text] not in mine:
                mine.append(where[text])
        columns.append(mine)
    return words, ids, columns


def _extra_word_lists(task: TaskSpec, extra_words) -> list[list[str]]:
    if not extra_words:
        return [[] for _ in task.labels]
    unknown = [label for label in extra_words if str(label) not in task.labels]
    if unknown:
        raise UserError(f"extra label words given for unknown labels {unknown}; {task.name}'s labels are {list(task.labels)}")
    lists = []
    for label in task.labels:
        given = extra_words.get(label, ())
        lists.append([given] if isinstance(given, str) else [str(w) for w in given])
    return lists


def search_label_words(backbone, task: TaskSpec, template: Template | str, train_examples: Sequence[Example], *,
                       k: int, n: int, seed_words=None, neighbours: int | None = None, batch_size: int = 32,
                       max_length: int | None = None, progress: bool = True, ranking: str = "logprob",
                       pmi_pool: int | None = None, whole_words: bool = False, extra_words=None,
                       words_per_pass: int = 32) -> LabelSearchResult:
    """LM-BFF auto-L steps 1 and 2 for one template: candidates from the backbone's zero-shot
    log-probabilities on `train_examples`, then the exact top-n assignments by training accuracy
    (Pearson for a regression task, whose labels are binarised at the median to pick candidates).

    seed_words (a Verbalizer or a label -> word mapping) with `neighbours`: each class's candidates
    are restricted to the `neighbours` nearest tokens of its seed word in the output-embedding space
    (LM-BFF's TREC setting). Fine-tuning and re-ranking the n assignments on dev is the engine's job.

    ranking: "logprob" (LM-BFF) or "pmi" (class-conditional PMI among the `pmi_pool` most likely
    tokens per class, default 10k). whole_words (causal backbones; a masked LM already scores one
    token): each class's k first-token candidates become whole words, each scored on every training
    example by the classifier's own class score; the words are re-ranked by `ranking` on those scores
    and the top-n assignments found on them. extra_words (label -> words, with whole_words) adds
    words, multi-token ones included, to their classes' candidates."""
    if ranking not in RANKINGS:
        raise UserError(f"unknown label-word ranking {ranking!r}; expected one of {RANKINGS}")
    if isinstance(template, str):
        template = Template.parse(template)
    rescore = whole_words and getattr(backbone, "kind", None) == "causal"
    if extra_words and not rescore:
        raise UserError("extra label words are scored as whole words: they need whole_words=True and a causal backbone")
    extra = _extra_word_lists(task, extra_words)
    poles, targets = _targets(task, train_examples)
    logprobs = zero_shot_label_logprobs(backbone, task, template, train_examples, batch_size=batch_size,
                                        max_length=max_length, progress=progress)
    if input_independent(logprobs):
        raise UserError(
            f"template {template.to_lmbff()!r}: the label position gets the same log-probabilities for every "
            f"training example (e.g. a causal model whose label comes before the input, or inputs that tokenise "
            f"alike), so label search cannot tell words apart; for a causal model put the mask after the sentence(s)")
    allowed = backbone.word_token_mask()
    if seed_words is not None:
        if neighbours is None:
            raise UserError("seed words restrict candidates to their nearest neighbours; also give `neighbours`")
        embeddings = backbone.model.get_output_embeddings().weight
        nearest = nearest_neighbour_filter(embeddings, _seed_word_ids(backbone, task, seed_words), neighbours, allowed)
        allowed = neighbour_masks(nearest, logprobs.shape[1], allowed)
    names = task.label_names if len(task.label_names) == task.num_classes else task.labels
    candidates = candidate_words(logprobs, poles, task.num_classes, k, allowed, class_names=names, ranking=ranking,
                                 pool=_pmi_pool(ranking, k, pmi_pool))
    metric = "pearson" if task.is_regression else "acc"
    if not rescore:
        assignments = top_assignments(logprobs, targets, candidates, n, metric, progress=progress)
        return LabelSearchResult.build(task=task.name, labels=task.labels, metric=metric, k=k, candidates=candidates,
                                       assignments=assignments, id_to_word=backbone.token_to_word,
                                       template=template.to_lmbff(), num_examples=len(train_examples),
                                       ranking=ranking)
    words, ids, columns = _word_columns(candidates, extra, backbone.token_to_word)
    scores = whole_word_scores(backbone, task, template, train_examples, words, batch_size=max(1, batch_size // 4),
                               words_per_pass=words_per_pass, max_length=max_length, progress=progress)
    masks = torch.zeros((task.num_classes, len(words)), dtype=torch.bool)
    for c, mine in enumerate(columns):
        masks[c, mine] = True
    ranked = candidate_words(scores, poles, task.num_classes, None, masks,
                             class_names=names, ranking=ranking)
    found = top_assignments(scores, targets, ranked, n, metric, progress=progress)
    assignments = [Assignment(tuple(ids[col] for col in a.word_ids), a.score, a.ranks, a.correct) for a in found]
    by_id = dict(zip(ids, words))
    return LabelSearchResult.build(task=task.name, labels=task.labels, metric=metric, k=k,
                                   candidates=[[ids[col] for col in cols] for cols in ranked],
                                   assignments=assignments, id_to_word=by_id.__getitem__,
                                   template=template.to_lmbff(), num_examples=len(train_examples),
                                   ranking=ranking, scoring="whole_word")
