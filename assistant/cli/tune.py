"""``assistant tune …``: an adapter learned from the user's own approved tool calls.

    tune data   saved chats + the audit log -> train/valid JSONL in mlx-lm's chat format
    tune run    mlx-lm's LoRA trainer on that data -> an adapter folder with a card
    tune eval   the valid split, with and without the adapter: matching and valid calls

Everything stays on this machine, under the data directory (``tune/``).
"""

from __future__ import annotations

from pathlib import Path

from assistant.tune import data_dir


def add_parser(commands, model_options) -> None:
    tune = commands.add_parser(
        "tune", help="fine-tune an adapter on your own approved tool calls (local only)",
        description="Build a training set from your saved chats and the tool-call audit "
        "log, train a LoRA adapter on it with mlx-lm, and measure what it changes.")
    sub = tune.add_subparsers(dest="tune_command", required=True, parser_class=type(tune))

    data = sub.add_parser("data", help="build train/valid sets from saved chats and the "
                          "audit log (shows the counts before writing)")
    data.add_argument("--exclude", action="append", default=[], metavar="CHAT",
                      help="leave this chat out (its id or title; repeatable)")
    data.add_argument("--list", action="store_true",
                      help="list the chats that would be used, with their counts, and stop")
    data.add_argument("--valid-share", type=float, default=0.1, metavar="SHARE",
                      help="share of examples kept for validation (default 0.1)")
    data.add_argument("--dry-run", action="store_true", help="show the counts, write nothing")
    data.add_argument("--out", type=Path, help=f"where to write (default {data_dir()})")

    run = sub.add_parser("run", help="train a LoRA adapter on the data (Ctrl+C keeps the "
                         "last checkpoint)")
    model_options(run)
    run.add_argument("--data", type=Path, help=f"the data folder (default {data_dir()})")
    run.add_argument("--name", help="the adapter's folder name (default tools-N)")
    run.add_argument("--iters", type=int, default=200, help="training steps (default 200)")
    run.add_argument("--batch-size", type=int, default=1, help="examples a step (default 1)")
    run.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    run.add_argument("--layers", type=int, default=8,
                     help="how many of the last blocks get LoRA layers (default 8)")
    run.add_argument("--learning-rate", type=float, default=1e-4, help="(default 1e-4)")
    run.add_argument("--max-seq-length", type=int, default=2048,
                     help="longest example in tokens; longer ones are cut (default 2048)")
    run.add_argument("--save-every", type=int, metavar="N",
                     help="keep a checkpoint every N steps (default: five over the run)")
    run.add_argument("--seed", type=int, default=0,
                     help="random seed for the adapter's start and the order of examples "
                          "(default 0)")
    run.add_argument("--yes", action="store_true", help="start without asking")

    evaluate = sub.add_parser("eval", help="tool-call accuracy on the valid split, with and "
                              "without the adapter")
    model_options(evaluate)
    evaluate.add_argument("--data", type=Path, help=f"the data folder (default {data_dir()})")
    evaluate.add_argument("--limit", type=int, help="at most this many examples")
    evaluate.add_argument("--max-tokens", type=int, default=512,
                          help="longest answer per example (default 512); a call cut "
                               "here counts as wrong")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")


def run(args, settings) -> int:
    if args.tune_command == "data":
        from assistant.tune.data import run_data

        return run_data(args, settings)
    if args.tune_command == "run":
        from assistant.tune.train import run_train

        return run_train(args, settings)
    from assistant.tune.evaluate import run_eval

    return run_eval(args, settings)
