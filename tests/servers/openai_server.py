"""mlx_lm.server, with what the fixture model says decided by a script (TESTING.md §2).

    python openai_server.py SCRIPTS --model DIR --port N [other mlx_lm.server options]

SCRIPTS is a file holding a JSON list of texts. Each request takes the first text as its
script (the last one stays, for every request after it); the model is held to it token
by token, special tokens included, and then ends its turn. A missing or empty file leaves
the model to itself. Everything else is the real server: the chat template, prompt
caching, the reasoning and tool-call parsing, the streaming and the usage figures.
"""

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx_lm.server as server  # noqa: E402
from scripted import Script  # noqa: E402

SCRIPTS = Path(sys.argv.pop(1))
_lock = threading.Lock()
_tokenizer = None


def _next_script() -> str | None:
    with _lock:
        try:
            scripts = json.loads(SCRIPTS.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not scripts:
            return None
        if len(scripts) > 1:
            SCRIPTS.write_text(json.dumps(scripts[1:]), encoding="utf-8")
        return scripts[0]


def _tokenizer_for_scripts():
    global _tokenizer
    if _tokenizer is None:
        from transformers import AutoTokenizer

        _tokenizer = AutoTokenizer.from_pretrained(sys.argv[sys.argv.index("--model") + 1])
    return _tokenizer


_original = server._make_logits_processors


def _scripted_processors(args):
    processors = _original(args)
    script = _next_script()
    if script is not None:
        processors = list(processors) + [Script(_tokenizer_for_scripts(), script)]
    return processors


server._make_logits_processors = _scripted_processors

if __name__ == "__main__":
    server.main()
