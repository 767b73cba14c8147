"""The fixture model is what TESTING.md promises: Qwen3's architecture and vocabulary."""

from __future__ import annotations

import json

from scripted import IM_END, THINK_END, THINK_START


def test_config_is_qwen3_with_the_real_vocabulary(fixture_model):
    config = json.loads((fixture_model / "config.json").read_text())
    assert config["model_type"] == "qwen3"
    assert config["vocab_size"] == 151936
    assert config["tie_word_embeddings"] is True


def test_special_token_ids(hf_tokenizer):
    ids = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": IM_END,
           "<tool_call>": 151657, "</tool_call>": 151658, "<tool_response>": 151665,
           "</tool_response>": 151666, "<think>": THINK_START, "</think>": THINK_END}
    assert {t: hf_tokenizer.convert_tokens_to_ids(t) for t in ids} == ids


def test_template_renders_qwen3_format(hf_tokenizer):
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "content": "", "reasoning_content": "use the tool",
         "tool_calls": [{"function": {"name": "now", "arguments": {}}}]},
        {"role": "tool", "content": "12:00"},
    ]
    text = hf_tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                            add_generation_prompt=True, enable_thinking=False)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert '<tools>\n{"type": "function"' in text
    assert '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call><|im_end|>' in text
    assert "<think>\nuse the tool\n</think>" in text  # after the last user turn: kept
    assert "<|im_start|>user\n<tool_response>\n12:00\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")

    later = messages + [{"role": "assistant", "content": "Noon."},
                        {"role": "user", "content": "Thanks"}]
    text = hf_tokenizer.apply_chat_template(later, tools=tools, tokenize=False,
                                            add_generation_prompt=True)
    assert "use the tool" not in text  # earlier reasoning dropped
    assert text.endswith("<|im_start|>assistant\n")
