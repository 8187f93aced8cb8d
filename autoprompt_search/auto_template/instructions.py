"""Templates the backbone writes when asked in words (in the spirit of APE, Zhou et al. 2022).

An instruction-tuned causal model (SmolLM2-Instruct) can be shown a few labelled training examples,
each text followed by its label word, and asked for the short phrase that would go between a text
and its label word. The beam search over spans only finds what the model finds likely token by token;
asking for the phrase as a whole gives it a chance to write what it would write for the task. Each
written phrase becomes `<sentence(s)> <phrase><mask><after>` in LM-BFF syntax; replies that cannot be
read as such a phrase (empty, too long, a label word inside, characters the syntax cannot hold) are
dropped. A reply that is a whole sentence is cut before the first label word it uses (else after its
first sentence): small models (SmolLM2-135M) rarely reply with the phrase alone. Several prompts (each with its own draw of examples) and several samples per prompt
(the first greedy, the rest sampled) are made; the result depends only on the seed.

The model is reached through a sampler, `sampler(prompt, n, seed) -> [(text, mean token log-prob)]`:
`CausalSampler` wraps a Hugging Face causal LM; tests pass a stub.
"""
from __future__ import annotations

import random
import re
from typing import Callable, Sequence

import torch

from ..errors import UserError
from ..tasks import Example, TaskSpec, get_task
from .base import _cache_kwargs, _class_words_of, _label_words_of
from .files import GeneratedTemplate
from .formats import _UNREPRESENTABLE_CHARS, _validated

INSTRUCTION_FORMAT = "instruction"
Sampler = Callable[[str, int, int], list[tuple[str, float]]]

# Where a reply marks the label word's place: the text after it is what follows the mask.
_PLACEHOLDER = re.compile(r"\[(?:mask|label|answer|word)\]|<(?:mask|label|answer|word)>|\{(?:mask|label|answer|word)\}"
                          r"|_{2,}|\.{3}|…", re.IGNORECASE)
_LEAD = re.compile(r"^(?:phrase|answer|template|output|prefix)\s*:\s*", re.IGNORECASE)
_ALLOWED = re.compile(r"^[A-Za-z0-9 ,.'?!:;()\"-]+$")


def instruction_prompt(task: TaskSpec, shown: Sequence[tuple[Example, str]]) -> str:
    """The request: labelled examples, each text followed by its label word, then the question."""
    words = sorted({word for _, word in shown})
    lines = [f"Here are examples from a text classification task. Each text is followed by its answer, "
             f"one of: {', '.join(words)}.", ""]
    for example, word in shown:
        text = " ".join(example.texts)
        lines += [f"Text: {text}", f"Answer: {word}", ""]
    # An example from another kind of task shows the form of the reply without suggesting this task's phrase.
    lines += ["Write a short phrase to put between a text and its answer, so that the text, the phrase and "
              "the answer read as one natural sentence. For example, for news topics the phrase could be "
              "\"This article is about\". Reply with the phrase only."]
    return "\n".join(lines)


def parse_phrase(reply: str, num_sentences: int, class_words: Sequence[str], *, max_words: int = 12) -> str | None:
    """A reply -> an LM-BFF template (sentences, phrase, mask, rest), or None when it is not a usable phrase."""
    line = next((ln.strip() for ln in reply.splitlines() if ln.strip()), "")
    line = _LEAD.sub("", line).strip().strip("\"'`").strip()
    lowered = {w.lower() for w in class_words}
    match = _PLACEHOLDER.search(line)
    if match:
        before, after = line[:match.start()], line[match.end():]
    else:
        # Small models write a whole sentence: the phrase is what precedes the first label word it used,
        # else its first sentence.
        words = line.split()
        cut = next((i for i, w in enumerate(words) if w.strip(".,!?:;\"'()").lower() in lowered), None)
        if cut is not None:
            before, after = " ".join(words[:cut]), ""
        else:
            before, after = re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0].rstrip(".!?"), ""
    before, after = before.rstrip(), after.strip()
    if not after or after in {".", "!", "?"}:
        after = after or "."
    else:
        after = " " + after if after[0].isalnum() else after
    n_words = len(before.split()) + len(after.split())
    if not before.strip() or n_words > max_words:
        return None
    for part in (before, after):
        if _UNREPRESENTABLE_CHARS & set(part) or not _ALLOWED.match(part.strip() or "."):
            return None
        if {w.strip(".,!?:;\"'()").lower() for w in part.split()} & lowered:
            return None
    sentences = "*sent_0*" if num_sentences == 1 else "*sent_0**+sent_1*"
    template = f"*cls*{sentences}_{before.strip().replace(' ', '_')}*mask*{after.replace(' ', '_')}*sep+*"
    return template if _validated(template, num_sentences) is not None else None


def _shown_examples(examples: Sequence[Example], words: list[str], per_class: int,
                    rng: random.Random) -> list[tuple[Example, str]]:
    by_word: dict[str, list[int]] = {}
    for index, word in enumerate(words):
        by_word.setdefault(word, []).append(index)
    chosen = [i for word in sorted(by_word) for i in rng.sample(by_word[word], min(per_class, len(by_word[word])))]
    rng.shuffle(chosen)
    return [(examples[i], words[i]) for i in chosen]


class InstructionGenerator:
    """Templates written by the model from `n_prompts` requests, `samples_per_prompt` replies each.

    `generate` returns `GeneratedTemplate`s (format "instruction", score = the reply's mean token
    log-probability), best first, without duplicates, so `screen_by_zero_shot` takes them like the
    beam search's. `last_replies` keeps every (reply, template or None) of the last call.
    """

    def __init__(self, sampler: Sampler, *, n_prompts: int = 4, samples_per_prompt: int = 4,
                 examples_per_class: int = 2, max_words: int = 12, seed: int = 0) -> None:
        if min(n_prompts, samples_per_prompt, examples_per_class, max_words) < 1:
            raise UserError("n_prompts, samples_per_prompt, examples_per_class and max_words must be >= 1")
        self.sampler, self.seed = sampler, seed
        self.n_prompts, self.samples_per_prompt = n_prompts, samples_per_prompt
        self.examples_per_class, self.max_words = examples_per_class, max_words
        self.last_replies: list[tuple[str, str | None]] = []

    @classmethod
    def from_model(cls, model, tokenizer, *, device=None, max_new_tokens: int = 24, temperature: float = 0.8,
                   **options) -> "InstructionGenerator":
        return cls(CausalSampler(model, tokenizer, device=device, max_new_tokens=max_new_tokens,
                                 temperature=temperature), **options)

    def generate(self, task: TaskSpec | str, train_examples: Sequence[Example], label_words: dict | None = None,
                 *, progress: bool = False) -> list[GeneratedTemplate]:
        from tqdm.auto import tqdm

        task = get_task(task)
        words = _label_words_of(task, train_examples, label_words)
        class_words = _class_words_of(task, label_words)
        found: dict[str, GeneratedTemplate] = {}
        self.last_replies = []
        for prompt_index in tqdm(range(self.n_prompts), desc="instruction templates", disable=not progress):
            rng = random.Random(f"{self.seed}/{prompt_index}")
            shown = _shown_examples(train_examples, words, self.examples_per_class, rng)
            replies = self.sampler(instruction_prompt(task, shown), self.samples_per_prompt,
                                   self.seed * 1000 + prompt_index)
            for text, score in replies:
                template = parse_phrase(text, task.num_sentences, class_words, max_words=self.max_words)
                self.last_replies.append((text, template))
                if template is not None and (template not in found or score > found[template].score):
                    found[template] = GeneratedTemplate(template, _validated(template, task.num_sentences),
                                                        float(score), INSTRUCTION_FORMAT)
        return sorted(found.values(), key=lambda g: -g.score)


class CausalSampler:
    """Replies of a causal LM to a request: the first greedy, the others sampled at `temperature` with a
    seeded generator; the chat template is used when the tokenizer has one (an instruction-tuned model
    answers a request in its chat format). Each reply stops at its first newline or end of text."""

    def __init__(self, model, tokenizer, *, device=None, max_new_tokens: int = 24, temperature: float = 0.8,
                 chat: bool | None = None) -> None:
        if max_new_tokens < 1 or not temperature > 0:
            raise UserError(f"max_new_tokens must be >= 1 and temperature > 0; got {max_new_tokens}, {temperature}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.chat = bool(getattr(tokenizer, "chat_template", None)) if chat is None else chat
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
        self.stops = {i for i in (tokenizer.eos_token_id, *newline[-1:]) if i is not None}

    def prompt_ids(self, prompt: str) -> list[int]:
        if self.chat:
            ids = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                     tokenize=True)
            return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        start = self.tokenizer.bos_token_id
        return ([start] if start is not None else []) + list(self.tokenizer(prompt + "\n", add_special_tokens=False)
                                                             ["input_ids"])

    def __call__(self, prompt: str, n: int, seed: int) -> list[tuple[str, float]]:
        from transformers.cache_utils import DynamicCache

        generator = torch.Generator().manual_seed(int(seed))
        ids = torch.tensor([self.prompt_ids(prompt)] * n, device=self.device)
        cache, fed = DynamicCache(), ids
        out_tokens: list[list[int]] = [[] for _ in range(n)]
        logprob_sums, done = [0.0] * n, [False] * n
        with torch.inference_mode():
            for _ in range(self.max_new_tokens):
                logits = self.model(input_ids=fed, **_cache_kwargs(self.model, cache)).logits[:, -1].double()
                log_probs = torch.log_softmax(logits, dim=-1)
                sampled = torch.multinomial(torch.softmax(logits / self.temperature, -1).cpu(), 1,
                                            generator=generator).squeeze(1)
                sampled[0] = int(log_probs[0].argmax())
                for row in range(n):
                    if done[row]:
                        continue
                    token = int(sampled[row])
                    if token in self.stops and out_tokens[row]:
                        done[row] = True
                        continue
                    if token not in self.stops:
                        out_tokens[row].append(token)
                        logprob_sums[row] += float(log_probs[row, token])
                if all(done):
                    break
                fed = sampled.to(self.device).unsqueeze(1)
        return [(self.tokenizer.decode(tokens, skip_special_tokens=True), s / max(1, len(tokens)))
                for tokens, s in zip(out_tokens, logprob_sums)]
