"""`search-templates search` (the default command): options from flags and a config file, then the whole search."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from ..errors import UserError
from ..textfiles import read_text


def _read_config_file(path: str) -> tuple[dict, dict[str, str]]:
    """The options in a TOML/JSON file, and for each the file and line it is on (for error messages)."""
    file = Path(path)
    text = read_text(file, "config file")
    try:
        data = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"config file {file}, line {error.lineno}: not valid JSON: {error.msg}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"config file {file}: not valid TOML: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {file}: expected a table/object of options, got {type(data).__name__}")
    values, origins = {}, {}
    lines = text.split("\n")
    for key, value in data.items():
        name = key.replace("-", "_")
        values[name] = value
        pattern = re.compile(r'^\s*["\']?' + re.escape(key) + r'["\']?\s*[=:]')
        number = next((i for i, line in enumerate(lines, start=1) if pattern.match(line)), None)
        origins[name] = f"config file {file}" + (f", line {number}" if number else "") + f": field {key!r}"
    return values, origins


def build_search_parser(sub) -> None:
    from ..search import SELECTIONS, SearchOptions

    d = SearchOptions(task="")
    parser = sub.add_parser("search", help="run the whole LM-BFF search (the default command)")
    parser.add_argument("--config", help="TOML or JSON file of options (command-line flags override it)")
    parser.add_argument("--task", help="task name or custom task JSON file")
    parser.add_argument("--data-dir", help="LM-BFF data folder (default: $AUTOPROMPT_DATA_DIR, else ../shared/data/lmbff)")
    parser.add_argument("--k", type=int, help=f"examples per class (default {d.k})")
    parser.add_argument("--model", help=f"backbone (default {d.model}; e.g. roberta-large with a network)")
    parser.add_argument("--generator", help="template generator: auto (T5 if available offline, else the "
                        "backbone), causal, none, or a T5 model name/folder")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"k-shot split seeds (default {list(d.seeds)})")
    parser.add_argument("--out", help="output folder (default runs/<task>)")
    parser.add_argument("--n-templates", type=int, help=f"generated templates to evaluate (default {d.n_templates})")
    parser.add_argument("--beam-width", type=int, help=f"generator beam width (default {d.beam_width}; LM-BFF 100)")
    parser.add_argument("--generator-steps", type=int, help="generator decoding steps (default 18 for T5, 10 causal)")
    parser.add_argument("--template-screening", choices=["zero_shot", "score"],
                        help="generated templates kept: best zero-shot dev metric among all generated (default) "
                             "or best generation score")
    parser.add_argument("--screening-split", choices=["dev", "train"],
                        help="examples the zero-shot screening scores generated templates on: dev (default, the "
                             "split the race ranks on) or the seed's training examples")
    parser.add_argument("--template-objective", choices=["likelihood", "discriminative"],
                        help="causal generator's beam objective: likelihood of the filled template (LM-BFF, default) "
                             "or discriminative (the gold label word's margin over the other classes)")
    parser.add_argument("--instruction-templates", type=int,
                        help="also ask a causal backbone to write templates, in N prompts of labelled examples "
                             "(APE style; default 0: off)")
    parser.add_argument("--n-mappings", type=int, help=f"searched label-word mappings (default {d.n_mappings})")
    parser.add_argument("--label-k", type=int, help=f"candidate words per class in label search (default {d.label_k}; LM-BFF 100)")
    parser.add_argument("--label-ranking", choices=["logprob", "pmi"],
                        help="rank candidate label words by summed log-probability (default, LM-BFF) or by "
                             "class-conditional PMI (likelier for one class than for all examples)")
    parser.add_argument("--label-whole-words", action="store_true", default=None,
                        help="causal backbones: re-score candidate label words as whole words with the "
                             "classifier's own class score before assigning them")
    parser.add_argument("--label-neighbours", type=int,
                        help="N: each class's candidate words are the N nearest tokens (output embeddings) of the "
                             "task's word for it, or of its label name (LM-BFF's TREC setting; default: the "
                             "whole vocabulary)")
    parser.add_argument("--label-words-per-class", type=int,
                        help="N > 1: also try one candidate with up to N searched label words per class, their "
                             "scores combined by log-mean-exp, the mean of their probabilities, so a class with more words "
                             "gains nothing from the count (default 1; needs --n-mappings > 0)")
    parser.add_argument("--label-synonyms", type=int,
                        help="N > 0: the task's own prompt (kept to the final rung, defended at export) uses its "
                             "label words with up to N synonyms each (words a sentence encoder puts nearest that "
                             "class's word, likelier for its training examples; scores combined by log-mean-exp); "
                             "its words alone stay a challenger. Default 0")
    parser.add_argument("--template-file", dest="template_files", action="append", help="file of templates, one per line")
    parser.add_argument("--mapping-file", dest="mapping_files", action="append", help="file of label-word mappings, one per line")
    parser.add_argument("--demonstrations", nargs="+", choices=["off", "random", "filtered"],
                        help="demonstration modes to try (default off)")
    parser.add_argument("--finalist-demonstrations", nargs="+", choices=["random", "filtered"],
                        help="after the race, also evaluate the best --demo-finalists candidates with these "
                             "demonstration modes at the full budget (default: none)")
    parser.add_argument("--demo-finalists", type=int,
                        help=f"how many of the race's best candidates --finalist-demonstrations takes "
                             f"(default {d.demo_finalists})")
    parser.add_argument("--filter-rate", dest="demo_filter_rate", type=float,
                        help=f"filtered demonstrations: share of each class most similar to the query (default {d.demo_filter_rate})")
    parser.add_argument("--inference-samples", dest="demo_inference_samples", type=int,
                        help=f"demonstration sets averaged per query (default {d.demo_inference_samples}; LM-BFF 16)")
    parser.add_argument("--demo-encoder", help=f"sentence encoder of filtered demonstrations (default {d.demo_encoder})")
    parser.add_argument("--strategy", choices=["halving", "exhaustive"], help="budget strategy (default halving)")
    parser.add_argument("--min-steps", type=int, help=f"steps of the first fine-tuning rung (default {d.min_steps})")
    parser.add_argument("--max-steps", type=int, help=f"full training budget (default {d.max_steps}; paper 1000)")
    parser.add_argument("--eta", type=float, help=f"halving rate (default {d.eta})")
    parser.add_argument("--lr", type=float, help=f"learning rate (default {d.lr}; paper 1e-5)")
    parser.add_argument("--batch-size", type=int, help=f"training batch size (default {d.batch_size})")
    parser.add_argument("--max-length", type=int, help=f"maximum prompt length (default {d.max_length})")
    parser.add_argument("--tuning", choices=["full", "lora"],
                        help="fine-tune every weight (full, default) or only LoRA adapters on the attention/MLP "
                             "projections (lora; usually wants a higher --lr than full, 1e-4 to 1e-3)")
    parser.add_argument("--embeddings", choices=["train", "freeze"],
                        help=f"under full tuning, train the token embeddings or keep them as pretrained (freeze: "
                             f"faster steps and less memory for a large vocabulary) (default {d.embeddings})")
    parser.add_argument("--lora-rank", type=int, help=f"rank of the LoRA adapters (default {d.lora_rank})")
    parser.add_argument("--lora-alpha", type=float,
                        help=f"LoRA scale numerator: updates are scaled by alpha / rank (default {d.lora_alpha:g})")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"],
                        help="fp32, bf16 autocast of training and scoring, or auto (default): bf16 where the "
                             "hardware computes it natively (CUDA with bf16, a CPU with AVX512-BF16 or AMX), "
                             "else fp32")
    parser.add_argument("--micro-batch-tokens", type=int,
                        help="at most this many padded tokens per training micro-batch (default: no bound): less "
                             "memory for more passes, the same gradient; e.g. 128 for --jobs 2 on a 16 GB laptop")
    parser.add_argument("--no-keep-task-prompt", dest="keep_task_prompt", action="store_false", default=None,
                        help="let halving drop the task's own prompt before the final rung (by default it "
                             "always reaches it, so the search returns it unless a candidate beats it there)")
    parser.add_argument("--selection", choices=SELECTIONS,
                        help="which final candidate to export: paired-loss (default): the task's own prompt "
                             "unless a candidate ranked above it gives the gold class a significantly higher "
                             "log-probability on the same dev examples (one-sided signed-rank test); paired: the "
                             "same, counting examples won and lost (one-sided sign test); dev: the best mean dev "
                             "metric, as LM-BFF")
    parser.add_argument("--selection-alpha", type=float,
                        help=f"significance level of the paired selection (default {d.selection_alpha:g})")
    parser.add_argument("--ensemble-size", type=int,
                        help=f"average the class probabilities of the top N candidates as one more final candidate "
                             f"(default {d.ensemble_size}; 0: no ensemble)")
    parser.add_argument("--ensemble-members", choices=["top", "forward"],
                        help=f"which of those N: top (all of them, as LM-BFF) or forward (the exported pick, then "
                             f"one at a time those that raise its mean dev gold log-probability when averaged in) "
                             f"(default {d.ensemble_members})")
    parser.add_argument("--jobs", type=int, help="parallel evaluations (default 1; 0: one per CPU core as memory allows, "
                        "one on a GPU, every worker of a cluster)")
    parser.add_argument("--backend", choices=["loky", "dask", "ray", "serial"], help="parallel backend (default loky)")
    parser.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (with --backend dask)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--no-test", dest="test", action="store_false", default=None,
                        help="do not score the test set at the final rung")
    parser.add_argument("--test-limit", type=int, help="score a seeded random sample of N test examples")
    parser.add_argument("--quiet", dest="progress", action="store_false", default=None, help="no progress bars")
    parser.add_argument("--retry-failed", action="store_true", default=None,
                        help="evaluate again the candidates whose evaluation failed in an earlier run")
    flags = {action.dest: action.option_strings[-1] for action in parser._actions if action.option_strings}
    parser.set_defaults(func=run_search_command, _flags=flags)


def search_options_from(args):
    """SearchOptions from the config file and the flags (flags win), each field's origin kept so
    that an error names the flag or the file and line it came from."""
    from ..search import SearchOptions

    values, origins = _read_config_file(args.config) if args.config else ({}, {})
    flags = getattr(args, "_flags", {})
    for name in SearchOptions.__dataclass_fields__:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
            origins[name] = flags.get(name, f"--{name.replace('_', '-')}")
    if not values.get("task"):
        raise UserError("--task is required (e.g. --task sst2), directly or in the --config file")
    if isinstance(values["task"], str):
        values.setdefault("out", f"runs/{Path(values['task']).stem.lower()}")
    options = SearchOptions.from_dict(values, source=args.config or "command line", origins=origins)
    return options, origins


def run_search_command(args) -> int:
    from ..models import quiet_transformers
    from ..search import run_pipeline

    options, origins = search_options_from(args)
    options.check_inputs(origins=origins, source=args.config or "command line")
    quiet_transformers()
    run_pipeline(options)
    return 0
