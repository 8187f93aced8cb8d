"""`search-templates compare`: prompt-based against standard fine-tuning on one task, with numbers."""
from __future__ import annotations

import shlex


def build_compare_parser(sub) -> None:
    from ..training import TrainConfig

    parser = sub.add_parser(
        "compare", help="prompt-based vs standard fine-tuning (and zero-shot) on a task: has prompting won here?",
        description="Fine-tune the task's prompt (or an exported one) and a classification head on the same backbone, "
                    "k-shot splits, seeds and budget; print and save the test metric of each (comparison.md, "
                    "comparison.png, comparison.json in --out). Run it again to resume.")
    parser.add_argument("--task", required=True, help="task name (sst2, SST-5, mr, trec, rte...) or a custom task JSON file")
    parser.add_argument("--prompt", default=None,
                        help="an exported prompt (runs/<task>/best.json; one prompt or an ensemble); default: the "
                             "task's own prompt")
    parser.add_argument("--methods", nargs="+", default=["zero-shot", "prompt", "standard"],
                        help="any of zero-shot, prompt, standard (default: all three)")
    parser.add_argument("--model", default=None,
                        help="backbone (default: the exported prompt's, else smollm2-135m)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100],
                        help="k-shot splits, one fine-tuning run per method on each (default: LM-BFF's five)")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps, help="training steps of both fine-tunings")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr, help="learning rate of both fine-tunings")
    parser.add_argument("--standard-steps", type=int, default=None,
                        help="training steps of standard fine-tuning alone (default: --steps)")
    parser.add_argument("--standard-lr", type=float, default=None,
                        help="learning rate of standard fine-tuning alone (default: --lr)")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--max-length", type=int, default=TrainConfig.max_length)
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto")
    parser.add_argument("--k", type=int, default=16, help="examples per class in the k-shot splits (default 16)")
    parser.add_argument("--data-dir", default=None,
                        help="LM-BFF data folder (default: $AUTOPROMPT_DATA_DIR, else ../shared/data/lmbff)")
    parser.add_argument("--test-limit", type=int, default=None, help="score a seeded sample of N test examples")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/compare-<task>)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run_compare)


def run_compare(args) -> int:
    from ..comparison import ComparisonOptions, run_comparison
    from ..models import quiet_transformers

    options = ComparisonOptions(task=args.task, prompt=args.prompt, methods=tuple(args.methods), model=args.model,
                                seeds=tuple(args.seeds), steps=args.steps, lr=args.lr, standard_steps=args.standard_steps,
                                standard_lr=args.standard_lr, batch_size=args.batch_size,
                                max_length=args.max_length, precision=args.precision, k=args.k,
                                data_dir=args.data_dir, test_limit=args.test_limit, device=args.device, out=args.out,
                                progress=not args.no_progress)
    quiet_transformers()
    command = "search-templates " + " ".join(shlex.quote(token) for token in args.command_line)
    summary = run_comparison(options, command=command)
    folder = options.out_folder(options.load_task())
    print((folder / "comparison.md").read_text(encoding="utf-8"))
    print(f"saved {folder / 'comparison.md'}, {folder / 'comparison.png'}, {folder / 'comparison.json'}")
    return 0 if not summary.missing else 1
