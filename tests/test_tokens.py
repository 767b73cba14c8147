"""tokens.py must give exactly the HF tokenizer's ids."""

from __future__ import annotations

import random

import pytest

from assistant.tokens import TokenCounter, counter_for

CORPUS = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "It's, I'm, you'RE, we'll, they'd, she'S: contractions in every case.",
    "我们今天去公园散步，然后在湖边吃了午饭。天气很好！",
    "日本語のテキストも混ざっています。한국어 문장도 있습니다.",
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < 10; ++i) {\n\tprintf(\"%d\\n\", i);\n}\n",
    "emoji 😀🎉👩‍👩‍👧‍👦 🇫🇷 and ✔️ done",
    "   leading spaces, then     runs     of spaces   \n\n\n\n   and newlines\r\n\r\n",
    "\t\t tabs \t and trailing whitespace    ",
    "digits 1234567890 and 3.14159 and 1,000,000 and ٣٤٥ and ①②",
    "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n<think>\nhmm\n</think>\n\nhi",
    "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call><|endoftext|>",
    "special tokens glued<|im_end|>to text and a fake <|im_startx|> one",
    "combining e\u0301 vs é, Å vs A\u030a, ﬁ ligature, Ｆｕｌｌｗｉｄｔｈ",
    "mixed: English 中文 Русский العربية עברית हिन्दी ελληνικά",
    "",
    "\n",
    " ",
    "a" * 500,
    "!!!???...,,,;;;" * 20,
    "https://example.com/path?query=1&other=two#frag user@example.org",
]


@pytest.fixture(scope="module")
def counter(fixture_model) -> TokenCounter:
    return counter_for(fixture_model)


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_same_ids_as_the_hf_tokenizer(counter, hf_tokenizer, text):
    assert counter.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False)


def test_same_ids_on_random_mixed_text(counter, hf_tokenizer):
    rng = random.Random(1234)
    alphabet = ("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 \n\t\r'\".,;:!?-_()[]{}<>/\\|"
                "éèçñüßøåÆ中文字测试日本語한국어Русскийالعربية😀🎉✔️\u0301\u200d ")
    specials = ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>"]
    for _ in range(300):
        parts = [rng.choice(alphabet) * rng.choice([1, 1, 1, 2, 5]) for _ in range(rng.randint(1, 60))]
        if rng.random() < 0.3:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(specials))
        text = "".join(parts)
        assert counter.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False), text


def test_special_tokens_keep_their_ids(counter):
    assert counter.encode("<|im_start|><|im_end|><think></think>") == [151644, 151645, 151667, 151668]


def test_count_and_round_trip(counter):
    text = "Round trip: 中文, emoji 😀, code `x = 1`."
    assert counter.count(text) == len(counter.encode(text))
    assert counter.decode(counter.encode(text)) == text


def test_counter_is_built_once_per_model(fixture_model):
    assert counter_for(fixture_model) is counter_for(fixture_model)


@pytest.mark.parametrize("damage", ["bit flipped", "cut short", "garbage", "empty"])
def test_tables_kept_between_runs_give_the_same_ids(fixture_model, hf_tokenizer, tmp_path,
                                                   monkeypatch, damage):
    from assistant import tokens

    tokenizer_json, kept_dir = fixture_model / "tokenizer.json", tmp_path / "tables"
    TokenCounter(tokenizer_json, cache_dir=kept_dir)  # parses the JSON, keeps the tables
    (kept,) = kept_dir.iterdir()
    data = kept.read_bytes()

    def no_json(path):
        raise AssertionError("tokenizer.json parsed again")

    with monkeypatch.context() as m:
        m.setattr(tokens, "_tables", no_json)
        again = TokenCounter(tokenizer_json, cache_dir=kept_dir)
    kept.write_bytes({"bit flipped": data[:-100] + bytes([data[-100] ^ 1]) + data[-99:],
                      "cut short": data[:len(data) // 2], "garbage": b"\0" * 1000,
                      "empty": b""}[damage])
    repaired = TokenCounter(tokenizer_json, cache_dir=kept_dir)  # never trusts a damaged file
    for counter in (again, repaired):
        for text in CORPUS:
            assert counter.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False)
    assert kept.read_bytes() == data  # and it is written afresh
