"""Token counting speed: tokens.py (tiktoken) against the HF tokenizer, same text; and
a long chat's prompt encoded by the engine (content as plain text) against mlx-lm's
``apply_chat_template``.

    python scripts/bench_tokens.py MODEL_DIR [--mb 1]

Prints two tables; each pair must also agree on every id, or the script exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SAMPLE = """\
# Notes from the planning meeting

We agreed to ship the offline mode first. Les tests d'intégration passent sur les deux
plateformes; 中文的说明文档下周完成。 The budget is 1,250,000 and the deadline 2026-12-01.

```python
def total(items: list[float]) -> float:
    return sum(x * 1.2 for x in items if x > 0)  # VAT included 😀
```

- [ ] Ask Priya about the import tool
- [x] Fix the    spacing    issue\t(tabs too)
"""


def best_of(fn, text, repeats):
    best, ids = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        ids = fn(text)
        best = min(best, time.perf_counter() - start)
    return best, ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model directory with tokenizer.json")
    parser.add_argument("--mb", type=float, default=1.0, help="text size in MB (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from assistant.tokens import TokenCounter

    size = int(args.mb * 1_000_000)
    text = (SAMPLE * (size // len(SAMPLE.encode()) + 1))
    while len(text.encode()) > size:
        text = text[: len(text) - 100]

    start = time.perf_counter()
    counter = TokenCounter(args.model / "tokenizer.json")
    build = time.perf_counter() - start
    hf = AutoTokenizer.from_pretrained(args.model)

    fast, ids = best_of(counter.encode, text, args.repeats)
    slow, hf_ids = best_of(lambda t: hf.encode(t, add_special_tokens=False), text, args.repeats)
    if ids != hf_ids:
        print("tokens.py and the HF tokenizer disagree", file=sys.stderr)
        return 1

    mb = len(text.encode()) / 1e6
    print(f"{mb:.2f} MB of mixed text, {len(ids):,} tokens, best of {args.repeats}")
    print(f"  {'counter':<22}{'seconds':>10}{'MB/s':>10}")
    print(f"  {'tokens.py (tiktoken)':<22}{fast:>10.3f}{mb / fast:>10.1f}")
    print(f"  {'HF tokenizer':<22}{slow:>10.3f}{mb / slow:>10.1f}")
    print(f"  speed-up: {slow / fast:.1f}x; tokens.py built in {build:.2f} s; identical ids")
    return bench_prompt(args.model, counter, args.repeats)


def bench_prompt(model: Path, counter, repeats: int) -> int:
    """The chat prompt: control-token-safe encoding against the template's own tokenizing."""
    from mlx_lm.utils import load_tokenizer

    from assistant.engine.prompt import PromptEncoder

    tokenizer = load_tokenizer(model)
    encoder = PromptEncoder(tokenizer, counter)
    messages = [{"role": "system", "content": "Be brief."}]
    for _ in range(20):
        messages += [{"role": "user", "content": SAMPLE * 4},
                     {"role": "assistant", "content": SAMPLE * 4}]
    messages.append({"role": "user", "content": "And the deadline?"})
    ours, ids = best_of(lambda m: encoder.encode(m), messages, repeats)
    theirs, ref = best_of(lambda m: tokenizer.apply_chat_template(
        m, add_generation_prompt=True), messages, repeats)
    if ids != ref:
        print("the engine's prompt and apply_chat_template disagree", file=sys.stderr)
        return 1
    print(f"\na {len(messages)}-message chat, {len(ids):,} prompt tokens, best of {repeats}")
    print(f"  {'prompt encoding':<30}{'ms':>10}")
    print(f"  {'engine (content as text)':<30}{ours * 1000:>10.1f}")
    print(f"  {'apply_chat_template':<30}{theirs * 1000:>10.1f}")
    print(f"  ratio: {ours / theirs:.2f}; identical ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
