"""assistant.text.scrub: the one place lone surrogates are made encodable."""

from assistant.text import scrub, scrub_data


def test_lone_surrogates_become_replacement_characters():
    assert scrub("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert scrub("\udcff").encode("utf-8") == "\ufffd".encode("utf-8")  # surrogateescape'd byte


def test_valid_text_and_well_formed_pairs_are_kept():
    assert scrub("plain ü 中文 😀") == "plain ü 中文 😀"
    assert scrub("\ud83d\ude00") == "😀"


def test_nested_data_is_scrubbed_keys_included():
    data = {"k\ud800": ["x\udfff", 1, None, {"y": "\ud800"}], "n": 2.5}
    clean = scrub_data(data)
    assert clean == {"k\ufffd": ["x\ufffd", 1, None, {"y": "\ufffd"}], "n": 2.5}
    import json
    json.dumps(clean, ensure_ascii=False).encode("utf-8")  # encodable everywhere
