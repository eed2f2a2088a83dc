"""Character ids, checked against the format every ELMo weight file assumes.

Format (see PROVENANCE.md of the AllenNLP fixtures): ids 0-255 are UTF-8 bytes, begin-of-sentence
256, end-of-sentence 257, begin-of-word 258, end-of-word 259, padding 260; a token is
begin-of-word, at most 48 bytes, end-of-word, padding up to 50; finally +1 on every id.
"""

from __future__ import annotations

import pytest
import torch

from spacy_elmo.bilm import BOS_TOKEN, EOS_TOKEN, batch_to_ids, token_to_char_ids

pytestmark = pytest.mark.usefixtures("single_thread")

# Shifted (+1) special ids, derived from the format, not from the code under test.
BOW, EOW, PAD = 258 + 1, 259 + 1, 260 + 1
BOS_MARK, EOS_MARK = 256 + 1, 257 + 1
N = 50


def expected_ids(token_bytes: bytes) -> list[int]:
    body = [b + 1 for b in token_bytes[:48]]
    ids = [BOW, *body, EOW]
    return ids + [PAD] * (N - len(ids))


def test_known_ascii_token_exact_ids():
    ids = token_to_char_ids("Hi!")
    assert ids == [259, ord("H") + 1, ord("i") + 1, ord("!") + 1, 260] + [261] * 45
    assert len(ids) == N


def test_every_byte_is_shifted_by_one():
    for token in ["a", "Z", "0", "~", " ", "\t", "\x00", "\x7f"]:
        ids = token_to_char_ids(token)
        assert ids[1] == token.encode("utf-8")[0] + 1
        assert ids[0] == BOW and ids[2] == EOW and ids[3:] == [PAD] * 47


def test_no_zero_id_in_a_real_token():
    # 0 is reserved for batch padding: no real token may produce it, not even the NUL byte.
    for token in ["", "\x00", "\x00" * 60, "ÿ", "\ud800"]:
        assert min(token_to_char_ids(token)) >= 1


def test_empty_string_token_is_just_the_word_markers():
    assert token_to_char_ids("") == [BOW, EOW] + [PAD] * 48


def test_sentence_markers():
    assert token_to_char_ids(BOS_TOKEN) == [BOW, BOS_MARK, EOW] + [PAD] * 47
    assert token_to_char_ids(EOS_TOKEN) == [BOW, EOS_MARK, EOW] + [PAD] * 47
    assert BOS_TOKEN == "<S>" and EOS_TOKEN == "</S>"


def test_marker_lookalikes_are_ordinary_tokens():
    for token in ["<s>", "<S", "<UNK>", " <S>", "</S> "]:
        assert token_to_char_ids(token) == expected_ids(token.encode("utf-8"))


@pytest.mark.parametrize("length", [47, 48, 49, 50, 100, 10_000])
def test_long_tokens_are_cut_to_48_bytes(length):
    token = "".join(chr(ord("a") + i % 26) for i in range(length))
    ids = token_to_char_ids(token)
    assert len(ids) == N
    assert ids == expected_ids(token.encode("utf-8"))
    kept = min(length, 48)
    assert ids[1 : 1 + kept] == [ord(ch) + 1 for ch in token[:kept]]
    assert ids[1 + kept] == EOW
    if length >= 48:
        assert PAD not in ids  # 1 + 48 + 1 = 50: no room left for padding


def test_tokens_sharing_the_first_48_bytes_get_the_same_ids():
    prefix = "x" * 48
    assert token_to_char_ids(prefix + "abc") == token_to_char_ids(prefix + "zzzzzz")
    assert token_to_char_ids(prefix[:-1] + "a") != token_to_char_ids(prefix[:-1] + "b")


@pytest.mark.parametrize(
    "token",
    ["é", "naïve", "日本語", "😀", "e\u0301", "🇫🇷", "\u200b", "ß" * 30],
)
def test_multibyte_utf8(token):
    raw = token.encode("utf-8")
    assert len(raw) > len(token)  # the test data really is multi-byte
    assert token_to_char_ids(token) == expected_ids(raw)


def test_cut_may_split_a_multibyte_character():
    # 47 ASCII bytes + "é" (0xC3 0xA9): only the first byte of "é" fits in 48.
    token = "a" * 47 + "é"
    ids = token_to_char_ids(token)
    assert ids[48] == 0xC3 + 1
    assert ids[49] == EOW
    assert 0xA9 + 1 not in ids


def test_lone_surrogate_maps_to_its_surrogatepass_bytes():
    ids = token_to_char_ids("\ud800")
    assert ids[:5] == [BOW, 0xED + 1, 0xA0 + 1, 0x80 + 1, EOW]


@pytest.mark.parametrize(
    "bad", [5, 3.5, None, b"abc", ["a"], ("a",)], ids=["int", "float", "None", "bytes", "list", "tuple"]
)
def test_non_str_token_raises_type_error(bad):
    with pytest.raises(TypeError, match="str"):
        token_to_char_ids(bad)


# ---- batches ---------------------------------------------------------------------------------


def test_batch_shape_padding_and_rows():
    batch = [["a", "bb", "ccc"], ["dd"], []]
    ids = batch_to_ids(batch)
    assert ids.dtype == torch.long
    assert tuple(ids.shape) == (3, 3, N)
    for i, sentence in enumerate(batch):
        for j in range(3):
            if j < len(sentence):
                assert ids[i, j].tolist() == token_to_char_ids(sentence[j])
            else:
                assert ids[i, j].eq(0).all()


def test_batch_has_no_sentence_markers():
    ids = batch_to_ids([["word"]])
    assert tuple(ids.shape) == (1, 1, N)
    assert BOS_MARK not in ids.flatten().tolist()
    assert EOS_MARK not in ids.flatten().tolist()


def test_empty_batch_and_empty_sentences():
    assert tuple(batch_to_ids([]).shape) == (0, 0, N)
    assert tuple(batch_to_ids([[]]).shape) == (1, 0, N)
    assert tuple(batch_to_ids([[], []]).shape) == (2, 0, N)


def test_batch_accepts_tuples_of_tokens():
    assert torch.equal(batch_to_ids([("a", "b")]), batch_to_ids([["a", "b"]]))


def test_repeated_tokens_get_identical_rows():
    ids = batch_to_ids([["the", "cat", "the"], ["the"]])
    assert torch.equal(ids[0, 0], ids[0, 2])
    assert torch.equal(ids[0, 0], ids[1, 0])
    assert not torch.equal(ids[0, 0], ids[0, 1])


def test_string_instead_of_batch_raises_type_error():
    with pytest.raises(TypeError, match="not a string"):
        batch_to_ids("Hello world .")


def test_string_instead_of_token_list_raises_type_error():
    with pytest.raises(TypeError, match="list of tokens"):
        batch_to_ids(["Hello world ."])
    with pytest.raises(TypeError, match="list of tokens"):
        batch_to_ids([["fine"], "not fine"])


@pytest.mark.parametrize(
    "bad", [5, None, b"abc", 2.5, ["nested"], {"a": 1}], ids=["int", "None", "bytes", "float", "list", "dict"]
)
def test_non_str_token_in_batch_raises_clear_type_error(bad):
    with pytest.raises(TypeError, match="must be str"):
        batch_to_ids([["ok", bad]])
