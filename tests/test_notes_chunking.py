"""notes/chunking.py: chunks fit the budget, follow the Markdown, and lose nothing."""

from __future__ import annotations

import random
import re

import pytest

from assistant.notes.chunking import Chunk, chunk_markdown, split_markdown
from assistant.tokens import counter_for


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def tokens(fixture_model):
    """The real Qwen token count."""
    return counter_for(fixture_model).count


# -- realistic notes -------------------------------------------------------------------

FRONT_MATTER = """---
title: Team notes
# a YAML comment, not a heading
tags: [planning, retro]
---
"""

EN_PARAGRAPHS = [
    "We agreed to move the release to the second week of March. The migration scripts are "
    "not ready, and nobody wants to run them on a Friday! Dana will own the rollout plan.",
    "The new search index is three times faster on the staging data set. It still misses "
    "results for queries with accents, so Tom is adding a normalisation step before indexing.",
    "Customer feedback was mostly positive. Two people asked for an export to CSV; one asked "
    "whether the dark theme could be the default. Should we run a survey? Probably not yet.",
    "Budget: the cloud bill went up 12% last month, almost all of it from log storage. We "
    "will cut retention from 90 to 30 days and archive the rest to cold storage.",
]

ZH_PARAGRAPHS = [
    "今天的会议主要讨论了新版本的发布计划。大家一致认为迁移脚本还没有准备好，所以发布推迟到三月第二周。"
    "王芳负责整理上线步骤！有问题吗？没有。",
    "搜索索引在测试数据上快了三倍，但是带声调的查询仍然找不到结果。小李会在建立索引之前加一个规范化步骤。"
    "下周再检查一次。",
    "用户反馈总体上是积极的。有两个人希望能导出表格，还有一个人问能不能默认使用深色主题。"
    "我们要不要做一次问卷调查？暂时不用。",
]

CODE = """```python
def rollout(plan: list[str]) -> None:
    # runs every step, stopping at the first failure
    for step in plan:
        print("running", step)
        if not run(step):
            raise SystemExit(f"failed at {step}")
```
"""

LIST = """- [ ] write the migration guide
- [ ] book the meeting room for the retro
- [x] send the agenda to everyone
- ask Tom about the accent bug
"""


def meeting_notes(n_sections: int = 6, seed: int = 0) -> str:
    """A long note: front matter, nested headings, prose in two languages, code, lists."""
    rng = random.Random(seed)
    parts = [FRONT_MATTER, "\n# Weekly notes\n\nNotes from the weekly team meetings.\n"]
    for i in range(n_sections):
        parts.append(f"\n## Week {i + 1}\n")
        for j in range(rng.randint(1, 3)):
            parts.append(f"\n### Topic {i + 1}.{j + 1}\n\n")
            blocks = rng.sample(EN_PARAGRAPHS, 2) + [rng.choice(ZH_PARAGRAPHS)]
            blocks += rng.sample([CODE, LIST], rng.randint(0, 2))
            rng.shuffle(blocks)
            parts.append("\n".join(b.rstrip("\n") + "\n" for b in blocks))
    return "".join(parts)


# -- checks ----------------------------------------------------------------------------

def assert_lossless(text: str, chunks: list[Chunk]) -> None:
    """Chunks tile the text; each shows its slice whole (bar blank lines around it and
    leading headings that its context repeats); all of the text appears in order."""
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for before, after in zip(chunks, chunks[1:]):
        assert before.end == after.start
    for chunk in chunks:
        assert chunk.text.startswith(chunk.context)
        body = chunk.text[len(chunk.context):].strip()
        part = text[chunk.start:chunk.end]
        assert body or chunk.context, chunk
        assert part.rstrip().endswith(body), chunk
        at = len(part.rstrip()) - len(body)
        for line in part[:at].splitlines():
            assert not line.strip() or line.strip() in chunk.context.splitlines()
    shown = iter("".join("".join(chunk.text.split()) for chunk in chunks))
    assert all(char in shown for char in "".join(text.split())), "text lost or out of order"


def assert_fits(chunks: list[Chunk], max_tokens: int, count) -> None:
    for chunk in chunks:
        assert count(chunk.text) <= max_tokens, (count(chunk.text), chunk.text)


def find_chunk(chunks: list[Chunk], needle: str) -> list[int]:
    return [i for i, chunk in enumerate(chunks) if needle in chunk.text]


# -- tests -----------------------------------------------------------------------------

def test_a_note_that_fits_is_one_chunk(tokens):
    note = FRONT_MATTER + "\n# Groceries\n\n" + LIST
    assert chunk_markdown(note, 500, tokens) == [note]
    assert chunk_markdown(note, words(note), words) == [note]


def test_long_note_is_cut_at_headings(tokens):
    sections = [f"## Day {i}\n\n{EN_PARAGRAPHS[i % 4]}\n\n" for i in range(8)]
    note = "# Diary\n\n" + "".join(sections)
    budget = tokens("# Diary\n\n" + sections[0] + sections[1]) + 5

    chunks = split_markdown(note, budget, tokens)

    assert len(chunks) > 3
    assert_lossless(note, chunks)
    assert_fits(chunks, budget, tokens)
    for i, section in enumerate(sections):  # no section is cut
        assert len(find_chunk(chunks, section.strip())) == 1, i
    for chunk in chunks[1:]:
        assert chunk.context == "# Diary\n\n"
        assert chunk.text.startswith("# Diary\n\n## Day ")


def test_big_section_is_cut_at_paragraphs_and_keeps_its_headings(tokens):
    note = ("# Project Atlas\n\nSummary first.\n\n## Status\n\n"
            + "\n\n".join(EN_PARAGRAPHS * 2) + "\n\n## Next\n\nShip it.\n")
    budget = 2 * max(tokens(p) for p in EN_PARAGRAPHS) + 20

    chunks = split_markdown(note, budget, tokens)

    assert_lossless(note, chunks)
    assert_fits(chunks, budget, tokens)
    for paragraph in EN_PARAGRAPHS:  # every paragraph whole, twice
        assert len(find_chunk(chunks, paragraph)) == 2
    continued = [c for c in chunks if c.start > note.index("## Status") and "## Next" not in c.text]
    assert continued
    for chunk in continued:
        assert chunk.context == "# Project Atlas\n## Status\n\n"


def test_big_paragraph_is_cut_at_sentences(tokens):
    sentences = [s for p in EN_PARAGRAPHS for s in re.split(r"(?<=[.!?;])\s+", p)]
    note = "## Retro\n\n" + " ".join(sentences * 3) + "\n"
    budget = 60

    chunks = split_markdown(note, budget, tokens)

    assert len(chunks) > 3
    assert_lossless(note, chunks)
    assert_fits(chunks, budget, tokens)
    for chunk in chunks:
        assert re.search(r"[.!?]$", chunk.text), chunk.text  # ends on a sentence end
    for chunk in chunks[1:]:
        assert chunk.text.startswith("## Retro\n\n")


def test_chinese_paragraph_is_cut_at_chinese_sentence_ends(tokens):
    paragraph = "".join(ZH_PARAGRAPHS * 4)
    note = "# 会议记录\n\n" + paragraph + "\n"
    budget = 80

    chunks = split_markdown(note, budget, tokens)

    assert len(chunks) > 3
    assert_lossless(note, chunks)
    assert_fits(chunks, budget, tokens)
    assert "".join(c.text[len(c.context):] for c in chunks) == paragraph
    for chunk in chunks:
        assert chunk.text[-1] in "。！？", chunk.text
    for chunk in chunks[1:]:
        assert chunk.text.startswith("# 会议记录\n\n")


def test_code_blocks_that_fit_are_never_cut(tokens):
    note = meeting_notes(10)
    code = CODE.strip()
    for budget in (tokens(CODE) + 40, 150, 300, 1000):
        chunks = split_markdown(note, budget, tokens)
        assert_lossless(note, chunks)
        assert_fits(chunks, budget, tokens)
        whole = sum(chunk.text.count(code) for chunk in chunks)
        assert whole == note.count(code), budget
        assert whole == sum(chunk.text.count("def rollout") for chunk in chunks)


def test_a_code_block_bigger_than_the_budget_is_cut_between_lines(tokens):
    lines = [f"    total += price[{i}] * quantity[{i}]  # line {i}" for i in range(200)]
    note = "# Script\n\nThe whole thing:\n\n```python\n" + "\n".join(lines) + "\n```\n"
    budget = 120

    chunks = split_markdown(note, budget, tokens)

    assert_lossless(note, chunks)
    assert_fits(chunks, budget, tokens)
    shown = [line for chunk in chunks for line in chunk.text.splitlines()]
    for line in lines:
        assert line in shown  # every line whole


def test_hashes_in_code_and_front_matter_are_not_headings(tokens):
    note = FRONT_MATTER + "\n# Real heading\n\n" + "\n\n".join([CODE] * 6 + EN_PARAGRAPHS)
    chunks = split_markdown(note, tokens(CODE) + 30, tokens)
    assert_lossless(note, chunks)
    for chunk in chunks:
        assert "comment" not in chunk.context
        assert chunk.context in ("", "# Real heading\n\n")


@pytest.mark.parametrize("budget", [40, 100, 250, 600, 2000])
def test_every_chunk_fits_a_real_token_budget(tokens, budget):
    for seed in range(3):
        note = meeting_notes(8, seed)
        chunks = split_markdown(note, budget, tokens)
        assert len(chunks) > 1
        assert_lossless(note, chunks)
        assert_fits(chunks, budget, tokens)


@pytest.mark.parametrize("budget", [8, 25, 60, 200])
def test_every_chunk_fits_a_word_budget(budget):
    note = meeting_notes(8, seed=7)
    chunks = split_markdown(note, budget, words)
    assert_lossless(note, chunks)
    assert_fits(chunks, budget, words)
    assert chunk_markdown(note, budget, words) == [chunk.text for chunk in chunks]


def test_chunks_are_well_filled(tokens):
    note = meeting_notes(12)
    budget = 500
    chunks = split_markdown(note, budget, tokens)
    assert len(chunks) <= 2 * tokens(note) / budget + 1


def test_text_without_any_break_is_cut_by_tokens(tokens):
    rng = random.Random(3)
    blob = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(20000))
    note = "# Key material\n\n" + blob + "\n"
    chunks = split_markdown(note, 100, tokens)
    assert_lossless(note, chunks)
    assert_fits(chunks, 100, tokens)
    assert "".join(c.text[len(c.context):] for c in chunks) == blob  # the heading is context


def test_count_is_called_a_reasonable_number_of_times(tokens):
    note = meeting_notes(20)
    counted = []

    def count(text: str) -> int:
        counted.append(len(text))
        return tokens(text)

    chunks = split_markdown(note, 200, count)
    assert_fits(chunks, 200, tokens)
    # Each piece is counted once per level it is cut at, plus one check per chunk.
    assert sum(counted) < 8 * len(note)
    assert len(counted) < 12 * len(chunks)


def test_budget_must_be_positive():
    with pytest.raises(ValueError):
        chunk_markdown("text", 0, words)


def test_a_character_bigger_than_the_budget_is_an_error(tokens):
    rare = next(c for c in "𠀀𪚥🜁𓀀" if tokens(c) > 1)
    with pytest.raises(ValueError, match="too small"):
        chunk_markdown(rare * 10, 1, tokens)


FRAGMENTS = [
    "# Title\n", "## Section\n", "#### Deep heading with several words\n", "#\n", "#tag\n",
    "    # indented, not a heading\n", "\n", "\n\n\n", "   \n", "\r\n", " ", "\t\t", "---\n",
    "```\n", "~~~~\n", "```py\n", "x = 1  # code\n", "- item\n", "> quote\n",
    "A sentence. Another one! A third?", "问题是什么？答案在这里。", "中" * 150, "x" * 250,
    "word " * 30, "😀🎉", "a.b.c", "...", "## " + "long " * 30 + "\n",
]


@pytest.mark.parametrize("seed", range(4))
def test_odd_markdown_never_breaks_the_rules(tokens, seed):
    """Random mixes of awkward fragments: unclosed fences, empty headings, blank runs,
    CRLF, giant words. Whatever the budget, chunks fit and nothing is lost."""
    rng = random.Random(seed)
    for _ in range(60):
        note = "".join(rng.choice(FRAGMENTS) + rng.choice(["", "\n", " "])
                       for _ in range(rng.randint(1, 60)))
        for count in (tokens, words):
            budget = rng.choice([4, 5, 8, 13, 30, 80, 300])
            chunks = split_markdown(note, budget, count)
            if len(chunks) > 1:
                assert_lossless(note, chunks)
            assert_fits(chunks, budget, count)
