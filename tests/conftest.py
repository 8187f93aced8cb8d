"""Shared fixtures: tiny random models with tokenizers trained here, saved to a temporary folder and
loaded back through the project's own loaders.

Folders are session-scoped and cheap to reload. The backbone fixtures (`tiny_mlm`, `tiny_causal`) are
session-scoped too, so tests must not train them: a test that updates weights loads its own copy
with `load_backbone(tiny_mlm_folder, device=TEST_DEVICE)` (or uses the `fresh_tiny_mlm` /
`fresh_tiny_causal` fixtures).

Every tiny vocabulary contains the label words of the 15 LM-BFF tasks and the words of their
manual templates, so that the masked LM sees each label word as one token.
"""
from __future__ import annotations

import os
import random
import string
from pathlib import Path

import pytest
import torch

from autoprompt_search.models import load_backbone, quiet_transformers
from autoprompt_search.tasks import Example, get_task, task_names

quiet_transformers()
# The models are tiny: one thread is fastest, and several test processes may share few cores.
torch.set_num_threads(1)

# Searches in tests run their evaluations in the test process (and its subprocesses) unless a test asks
# for workers: `--jobs` left to the search would start one worker per core.
os.environ["AUTOPROMPT_MAX_JOBS"] = "1"

# Tests run on the CPU unless told otherwise (e.g. AUTOPROMPT_TEST_DEVICE=cuda on a GPU machine).
TEST_DEVICE = os.environ.get("AUTOPROMPT_TEST_DEVICE", "cpu")


# The search's default precision "auto" is bf16 only where it is native: the tests (and the commands they
# start) run as if it were not, so that results do not depend on the machine. Tests of bf16 ask for it
# explicitly; tests of "auto" unset this and set the CPU flags themselves.
os.environ["AUTOPROMPT_NATIVE_BF16"] = "0"

POSITIVE_WORDS = ("wonderful", "lovely", "brilliant", "delightful", "superb", "charming")
NEGATIVE_WORDS = ("awful", "boring", "dull", "horrible", "tedious", "clumsy")
FILLER_WORDS = (
    "the a an this that movie film story plot actor actors scene scenes music cast director script "
    "ending moments and but with of to in on for is was are were it its his her their very quite "
    "really too so more most some every new old long short first last best worst kind sort man woman "
    "people world life time day night year home city house car dog cat book song game team school "
    "question answer who what where when why how many much which can does did will would should "
    "sentence premise hypothesis second first same different similar meaning because although while"
).split()
TEMPLATE_WORDS = "It was This is Is it true that What the kind of question A an".split()
PUNCTUATION = list(".,?!:;'\"()-")


def all_label_words() -> list[str]:
    words = []
    for name in task_names():
        words.extend(get_task(name).label_words.values())
    return sorted(set(words))


def vocabulary_words() -> list[str]:
    return sorted(set(all_label_words()) | set(POSITIVE_WORDS) | set(NEGATIVE_WORDS) | set(FILLER_WORDS)
                  | set(TEMPLATE_WORDS))


def training_corpus(lines: int = 400, seed: int = 0) -> list[str]:
    """Sentences that use every vocabulary word many times, with and without a leading space, in
    both cases, next to punctuation: enough for each word to become one token."""
    rng = random.Random(seed)
    words = vocabulary_words()
    corpus = []
    for word in words:  # each word alone, after a space, capitalised, before punctuation
        corpus.extend([word, f"x {word}", f"{word.capitalize()} {word}.", f"{word}, {word}?"] * 3)
    for _ in range(lines):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        corpus.append(sentence[0].upper() + sentence[1:] + rng.choice(PUNCTUATION))
    return corpus


# ---------------------------------------------------------------------------------------------
# Toy data


def toy_sentiment_examples(count: int, seed: int) -> list[Example]:
    """A linearly separable SST-2-like task: label 1 sentences contain positive words, label 0 ones
    negative words, both padded with filler."""
    rng = random.Random(seed)
    examples = []
    for index in range(count):
        label = index % 2
        cue = rng.choice(POSITIVE_WORDS if label else NEGATIVE_WORDS)
        filler = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(2, 6))]
        filler.insert(rng.randint(0, len(filler)), cue)
        sentence = " ".join(filler)
        examples.append(Example((sentence[0].upper() + sentence[1:] + ".",), str(label)))
    rng.shuffle(examples)
    return examples


def toy_similarity_examples(count: int, seed: int) -> list[Example]:
    """STS-B-like pairs with float scores in [0, 5]."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        first = " ".join(rng.choice(FILLER_WORDS) for _ in range(rng.randint(3, 6)))
        score = round(rng.uniform(0.0, 5.0), 2)
        second = first if score > 2.5 else " ".join(rng.choice(FILLER_WORDS) for _ in range(rng.randint(3, 6)))
        examples.append(Example((first.capitalize() + ".", second.capitalize() + "."), score))
    return examples


@pytest.fixture(scope="session")
def toy_sentiment():
    """(train, dev) of the toy SST-2-like task."""
    return toy_sentiment_examples(16, seed=1), toy_sentiment_examples(16, seed=2)


# ---------------------------------------------------------------------------------------------
# Tokenizers


def train_wordpiece_tokenizer(folder: Path):
    """A cased BERT-style WordPiece tokenizer saved to `folder` and loaded back. Its vocabulary is the
    corpus's words (every one a token, as training gave) and its characters, alone and as "##"
    continuations, in first-seen order: tokenizers' WordPieceTrainer broke frequency ties differently in
    every process, so the tiny model, and tests such as a LoRA fit's loss, changed from run to run."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    splitter = pre_tokenizers.BertPreTokenizer()
    words = [piece for line in training_corpus() for piece, _ in splitter.pre_tokenize_str(line)]
    characters = [c for word in words for c in word]
    vocabulary = list(dict.fromkeys([*specials, *characters, *("##" + c for c in characters), *words]))
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocabulary)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = splitter
    tokenizer.decoder = decoders.WordPiece()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    wrapped.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def train_byte_level_bpe_tokenizer(folder: Path):
    """A GPT-2-style byte-level BPE tokenizer (spaces as 'Ġ') saved to `folder` and loaded back."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(training_corpus(), trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>",
                                      eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    wrapped.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def train_t5_sentencepiece(folder: Path):
    """A T5 tokenizer on a SentencePiece model trained here; T5Tokenizer adds <extra_id_0..99>."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    corpus_file = folder / "corpus.txt"
    corpus_file.write_text("\n".join(training_corpus()) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus_file), model_prefix=str(folder / "spiece"), vocab_size=300, model_type="unigram", hard_vocab_limit=False,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, minloglevel=2,
        user_defined_symbols=[], num_threads=1,
    )
    corpus_file.unlink()
    tokenizer = T5Tokenizer.from_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return T5Tokenizer.from_pretrained(folder)


# ---------------------------------------------------------------------------------------------
# Models


def _save_tiny_mlm(folder: Path) -> Path:
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = train_wordpiece_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id)
    model = BertForMaskedLM(config)
    with torch.no_grad():  # a non-zero output bias, so that scoring code that forgets it is caught
        model.get_output_embeddings().bias.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    return folder


def _save_tiny_llama(folder: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_byte_level_bpe_tokenizer(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _save_tiny_gpt2(folder: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = train_byte_level_bpe_tokenizer(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def _save_tiny_t5(folder: Path) -> Path:
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = train_t5_sentencepiece(folder)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=2, decoder_start_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


def _save_tiny_classifier(folder: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = train_wordpiece_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def _save_tiny_sentence_encoder(folder: Path) -> Path:
    """A tiny random BertModel whose WordPiece vocabulary has every letter and digit, so any text encodes."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    characters = string.ascii_lowercase + string.digits
    pieces = list(characters) + ["##" + c for c in characters]
    words = [w.lower() for w in vocabulary_words()]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *pieces, *PUNCTUATION]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder_folder(tmp_path_factory) -> Path:
    """Folder of a tiny random sentence encoder (BertModel, mean pooling) for filtered demonstrations."""
    return _save_tiny_sentence_encoder(tmp_path_factory.mktemp("tiny_sentence_encoder"))


@pytest.fixture(scope="session")
def tiny_mlm_folder(tmp_path_factory) -> Path:
    """Folder of a tiny random BertForMaskedLM with a cased WordPiece tokenizer."""
    return _save_tiny_mlm(tmp_path_factory.mktemp("tiny_mlm"))


@pytest.fixture(scope="session")
def tiny_causal_folder(tmp_path_factory) -> Path:
    """Folder of a tiny random LlamaForCausalLM (SmolLM2's architecture) with a byte-level BPE tokenizer."""
    return _save_tiny_llama(tmp_path_factory.mktemp("tiny_causal"))


@pytest.fixture(scope="session")
def tiny_gpt2_folder(tmp_path_factory) -> Path:
    """Folder of a tiny random GPT2LMHeadModel (absolute position embeddings) with byte-level BPE."""
    return _save_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


@pytest.fixture(scope="session")
def tiny_t5_folder(tmp_path_factory) -> Path:
    """Folder of a tiny random T5ForConditionalGeneration with a SentencePiece model trained here
    (load the tokenizer with `T5Tokenizer.from_pretrained(folder)`)."""
    return _save_tiny_t5(tmp_path_factory.mktemp("tiny_t5"))


@pytest.fixture(scope="session")
def tiny_classifier_folder(tmp_path_factory) -> Path:
    """Folder of a tiny random BertForSequenceClassification (for `load_classifier`)."""
    return _save_tiny_classifier(tmp_path_factory.mktemp("tiny_classifier"))


@pytest.fixture(scope="session")
def tiny_mlm(tiny_mlm_folder):
    """Read-only MaskedLMBackbone; do not train it (use `fresh_tiny_mlm`)."""
    return load_backbone(str(tiny_mlm_folder), device=TEST_DEVICE).train(False)


@pytest.fixture(scope="session")
def tiny_causal(tiny_causal_folder):
    """Read-only CausalLMBackbone (Llama); do not train it (use `fresh_tiny_causal`)."""
    return load_backbone(str(tiny_causal_folder), device=TEST_DEVICE).train(False)


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_folder):
    """Read-only CausalLMBackbone (GPT-2)."""
    return load_backbone(str(tiny_gpt2_folder), device=TEST_DEVICE).train(False)


@pytest.fixture(scope="session")
def tiny_t5_tokenizer(tiny_t5_folder):
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(tiny_t5_folder)


@pytest.fixture
def fresh_tiny_mlm(tiny_mlm_folder):
    """A MaskedLMBackbone of its own, safe to train."""
    return load_backbone(str(tiny_mlm_folder), device=TEST_DEVICE)


@pytest.fixture
def fresh_tiny_causal(tiny_causal_folder):
    """A CausalLMBackbone of its own, safe to train."""
    return load_backbone(str(tiny_causal_folder), device=TEST_DEVICE)
