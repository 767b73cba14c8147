"""``assistant tune eval``: does the adapter call tools better than the model alone?

On the valid split's tool-call examples, the model answers each prompt once without and
once with the adapter, and two shares are counted: calls equal to the recorded one (name
and arguments), and valid calls (they parse, name an offered tool, and fit its schema).
The tool-call grammar is off, so the figures are the model's own, not the grammar's;
thinking is off and the seed fixed, so a rerun gives the same figures.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from assistant.errors import UserError

SEED = 0


@dataclass
class Score:
    examples: int = 0
    matching: int = 0
    valid: int = 0

    def as_dict(self) -> dict:
        share = (lambda n: round(n / self.examples, 4) if self.examples else 0.0)
        return {"examples": self.examples, "matching": self.matching, "valid": self.valid,
                "matching_share": share(self.matching), "valid_share": share(self.valid)}


def run_eval(args, settings) -> int:
    from assistant.tune import data_dir
    from assistant.engine.backends import is_remote
    from assistant.tune.train import read_split

    spec = str(args.model or settings.model)
    if is_remote(spec):
        raise UserError("tune eval runs the model in this process (it is local-only): give "
                        "a local --model (a model directory or a Hugging Face repo id)")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if args.max_tokens < 1:
        raise UserError("--max-tokens must be at least 1")
    folder = Path(args.data or data_dir()).expanduser()
    examples = tool_call_examples(read_split(folder, "valid"))
    if not examples:
        raise UserError(f"no tool-call examples in {folder / 'valid.jsonl'}: run assistant "
                        "tune data with more approved tool calls (or a larger --valid-share)")
    examples = examples[:args.limit] if args.limit else examples
    adapter = find_adapter(args.adapter)

    from assistant.cli.terminal import download_progress
    from assistant.engine.engine import Engine
    from assistant.engine.model import resolve_model

    with download_progress(spec) as shown:
        model_path = resolve_model(spec, progress=shown)
    scores = {}
    for label, folder_ in (("base", None), ("adapter", adapter)):
        with Engine(model_path, context_limit=settings.context_limit, adapter=folder_) as engine:
            engine.wait_loaded()
            scores[label] = evaluate(engine, examples, progress=_progress(label),
                                     max_tokens=args.max_tokens)
    if args.json:
        print(json.dumps({"model": spec, "adapter_path": str(adapter), "data": str(folder),
                          "base": scores["base"].as_dict(),
                          "adapter": scores["adapter"].as_dict()}))
    else:
        print(table(scores, adapter))
    return 0


def find_adapter(given: Path | None) -> Path:
    """``--adapter``, else the newest folder ``tune run`` made."""
    from assistant.tune import adapters_dir

    if given is not None:
        path = Path(given).expanduser()
        if not path.is_dir():
            raise UserError(f"no adapter folder at {path}: give the folder tune run printed")
        return path
    try:
        folders = [p for p in adapters_dir().iterdir() if p.is_dir()]
    except OSError:
        folders = []
    if not folders:
        raise UserError(f"no adapter in {adapters_dir()}: run assistant tune run first, or "
                        "give --adapter DIR")
    return max(folders, key=lambda p: p.stat().st_mtime)


def tool_call_examples(rows: list[dict]) -> list[dict]:
    return [r for r in rows if isinstance(r.get("messages"), list) and r["messages"]
            and isinstance(r["messages"][-1], dict) and r["messages"][-1].get("tool_calls")]


def evaluate(engine, examples: list[dict], *, progress: Callable[[int, int], None] | None
             = None, processors: Callable[[dict], list] | None = None,
             max_tokens: int = 512) -> Score:
    """Score ``engine`` on ``examples``; ``processors(example)`` gives extra logits
    processors for one example (scripted output in tests). A tool call is short: an
    answer that rambles past ``max_tokens`` is cut there, and counts as wrong."""
    from assistant.engine.generation import GenerationOptions, TurnResult

    score = Score()
    for n, example in enumerate(examples, 1):
        options = GenerationOptions(
            thinking=False, max_tokens=max_tokens, tools=example.get("tools") or None,
            seed=SEED, constrain_tool_calls=False,
            logits_processors=tuple(processors(example)) if processors else ())
        result = TurnResult()
        for event in engine.generate(example["messages"][:-1], options):
            result.add(event)
        if result.error:
            raise UserError(f"the model failed on example {n}: {result.error}")
        said = [(c.name, c.arguments) for c in result.tool_calls]
        score.examples += 1
        score.matching += said == recorded_calls(example)
        score.valid += bool(said) and all(
            c.error is None and call_problem(example, c.name, c.arguments) is None
            for c in result.tool_calls)
        if progress:
            progress(n, len(examples))
    return score


def recorded_calls(example: dict) -> list[tuple]:
    calls = []
    for call in example["messages"][-1]["tool_calls"]:
        fn = call.get("function", call)
        arguments = fn.get("arguments")
        if isinstance(arguments, str):  # the other form chat templates take
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        calls.append((fn.get("name"), arguments))
    return calls


def call_problem(example: dict, name, arguments) -> str | None:
    from assistant.chat.turn import schema_problem

    if not isinstance(name, str) or not isinstance(arguments, dict):
        return "not a call"
    for tool in example.get("tools") or []:
        fn = tool.get("function", tool)
        if fn.get("name") == name:
            return schema_problem(fn.get("parameters") or {}, arguments)
    return f"unknown tool {name!r}"


def table(scores: dict[str, Score], adapter: Path) -> str:
    n = scores["base"].examples
    lines = [f"{n} tool-call example{'s' if n != 1 else ''} from the valid split",
             f"{'':<14}{'matching':>14}{'valid':>14}"]
    for label, name in (("base", "model alone"), ("adapter", "with adapter")):
        s = scores[label]
        cells = [f"{k}/{s.examples} {100 * k / s.examples:3.0f}%" if s.examples else "-"
                 for k in (s.matching, s.valid)]
        lines.append(f"{name:<14}{cells[0]:>14}{cells[1]:>14}")
    lines.append(f"adapter: {adapter}")
    return "\n".join(lines)


def _progress(label: str) -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(n: int, total: int) -> None:
        end = "\n" if n == total else ""
        sys.stderr.write(f"\r{label}: {n}/{total}{end}")
        sys.stderr.flush()
    return show
