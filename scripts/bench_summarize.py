"""Tokens the model processes to summarize a folder, against the tokens of the notes.

    python scripts/bench_summarize.py MODEL_DIR [--notes 50] [--context-limit 4096]

Builds a folder of real-looking notes of mixed length (English and Chinese, some longer
than the context window), then runs the summarizer three times in one process: fresh,
again with nothing changed, and after editing one note. Counts, not clocks: prefill and
decode tokens come from the engine's own statistics.

A model with random weights never ends a summary by itself, so every summary runs to its
cap: the worst case. ``--summary-tokens N`` ends each summary after N tokens instead, as
a model that follows "two or three short bullet points" would. ``--parallel N`` sends up
to N calls at once (the local engine still runs them one at a time, each from an empty KV
cache: the table shows what that costs in prefill).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

EN = ["The team agreed to ship the offline mode before the end of the quarter.",
      "Maria will move the old build artifacts to cold storage on Monday.",
      "Latency on the search page went from 420 ms to 180 ms after the index change.",
      "We still do not know whether the exporter should run as a sidecar.",
      "Remember to renew the certificate for the staging domain by March 3.",
      "The customer asked for a CSV export with one row per invoice line.",
      "Budget for the next sprint is 12 person-days, most of it for the migration."]
ZH = ["我们决定在本季度末之前发布离线模式。", "下周一小王会把旧的构建产物移到冷存储。",
      "搜索页面的延迟从四百二十毫秒降到了一百八十毫秒。", "还没有确定导出器是否应该作为边车运行。",
      "记得在三月三日之前续订测试环境的证书。"]


def make_note(rng: random.Random, target_words: int, index: int) -> str:
    lines = [f"# Note {index}: {rng.choice(['sync', 'plan', 'ideas', '读书笔记', 'incident', '周报'])}", ""]
    words = 0
    section = 0
    while words < target_words:
        if rng.random() < 0.15:
            section += 1
            lines += ["", f"## Part {section}", ""]
        if rng.random() < 0.08:
            lines += ["```python", f"def step_{section}(x):", "    return x * 2", "```"]
        sentence = rng.choice(ZH if rng.random() < 0.25 else EN)
        lines.append(("- " if rng.random() < 0.4 else "") + sentence)
        words += len(sentence.split()) if sentence.isascii() else len(sentence) // 2
    return "\n".join(lines) + "\n"


def make_folder(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for i in range(n):
        kind = rng.random()
        # Mostly short and medium notes, a few long ones past the context window.
        words = (rng.randint(80, 400) if kind < 0.6 else rng.randint(400, 1500) if kind < 0.9
                 else rng.randint(4000, 9000))
        folder = root / rng.choice(["", "work", "home", "books"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note{i:02}.md").write_text(make_note(rng, words, i), encoding="utf-8")


class StopAfter:
    """A logits processor that ends every generation after ``n`` tokens."""

    def __init__(self, n: int, eos: int):
        self.n, self.eos, self.last, self.step = n, eos, None, 0

    def __call__(self, tokens, logits):
        import mlx.core as mx

        size = tokens.size
        self.step = self.step + 1 if self.last is not None and size == self.last + 1 else 1
        self.last = size
        if self.step <= self.n:
            return logits
        return mx.where(mx.arange(logits.shape[-1]) == self.eos, mx.zeros_like(logits), -mx.inf)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--notes", type=int, default=50)
    parser.add_argument("--context-limit", type=int, default=4096)
    parser.add_argument("--length", default="short", choices=("short", "medium", "long"))
    parser.add_argument("--summary-tokens", type=int,
                        help="end each summary after N tokens (default: run to the cap)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="model calls in flight at once (default 1)")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="bench-summarize-")
    os.environ["ASSISTANT_HOME"] = home  # a cache of its own

    from assistant.config import Settings
    from assistant.engine import Engine
    from assistant.notes.reader import find_notes
    from assistant.notes.summarize import SummaryOptions, Summarizer
    from assistant.tokens import counter_for

    folder = Path(home) / "notes"
    make_folder(folder, args.notes)
    count = counter_for(args.model).count
    settings = Settings(context_limit=args.context_limit)
    rows = []
    with Engine(args.model, context_limit=args.context_limit) as engine:
        engine.wait_loaded()

        def run(label: str) -> dict:
            scan = find_notes([folder])
            stop = ([StopAfter(args.summary_tokens, engine.tokenizer.eos_token_id)]
                    if args.summary_tokens else [])
            s = Summarizer(engine, count, settings,
                           SummaryOptions(length=args.length, logits_processors=stop,
                                          parallel=args.parallel))
            started = time.perf_counter()
            result = s.run(scan.notes, scan.skipped).to_json()["stats"]
            seconds = time.perf_counter() - started
            over = sum(count(n.text) > engine.context_window for n in scan.notes)
            rows.append((label, result, over, len(s.calls), seconds))
            return result

        run("fresh")
        run("unchanged")
        edited = sorted(folder.rglob("*.md"))[7]
        edited.write_text(edited.read_text(encoding="utf-8") + "\n- One more thing to do.\n",
                          encoding="utf-8")
        run(f"after editing {edited.relative_to(folder)}")
        edited_tokens = count(edited.read_text(encoding="utf-8"))

    ending = (f"summaries end after {args.summary_tokens} tokens" if args.summary_tokens
              else "summaries run to their cap (random weights)")
    parallel = f", --parallel {args.parallel}" if args.parallel > 1 else ""
    print(f"{args.notes} notes, context window {args.context_limit} tokens, --length "
          f"{args.length}{parallel}, {ending}, model {args.model}")
    print(f"  {'run':<34}{'notes run':>10}{'calls':>7}{'note tok':>10}{'prefill':>9}"
          f"{'decode':>8}{'model/notes':>13}{'seconds':>9}")
    for label, st, _, calls, seconds in rows:
        print(f"  {label:<34}{st['notes_summarized']:>10}{calls:>7}{st['note_tokens']:>10,}"
              f"{st['prefill_tokens']:>9,}{st['decode_tokens']:>8,}"
              f"{st['model_tokens_per_note_token']:>13.3f}{seconds:>9.1f}")
    print(f"  notes longer than the context window: {rows[0][2]}; the edited note has "
          f"{edited_tokens:,} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
