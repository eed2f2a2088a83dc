"""Pretraining building blocks: corpus reading, vocabulary, windows, softmax heads, config."""

from __future__ import annotations

import gzip
import math
import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from spacy_elmo.bilm import BOS_TOKEN, EOS_TOKEN, ElmoOptions, token_to_char_ids
from spacy_elmo.bilm.options import original_options
from spacy_elmo.pretrain.batches import IGNORE, WindowBatcher
from spacy_elmo.pretrain.config import ConfigError, PretrainSettings, load_config
from spacy_elmo.pretrain.corpus import CorpusError, CorpusSettings, LineReader, TextStream, find_corpus_files
from spacy_elmo.pretrain.softmax import (
    AdaptiveSoftmax, FullSoftmax, SampledSoftmax, load_softmax, log_expected_count, save_softmax,
)
from spacy_elmo.pretrain.tokenizers import TokenizerError, make_tokenizer
from spacy_elmo.pretrain.vocab import BOS_ID, EOS_ID, UNK_ID, Vocab, VocabError, VocabSettings, build_vocab

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def read_all(reader: LineReader) -> list[bytes]:
    lines = []
    while (item := reader.read_line()) is not None:
        lines.append(item[0])
    return lines


# ---- corpus files and the line reader ---------------------------------------------------------


def test_missing_and_empty_corpus_are_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        find_corpus_files(tmp_path / "nope.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="holds no files"):
        find_corpus_files(tmp_path / "empty")
    (tmp_path / "empty" / "a.txt").write_bytes(b"")
    with pytest.raises(CorpusError, match="empty"):
        find_corpus_files(tmp_path / "empty")


def test_folder_of_plain_and_gzip_files(tmp_path):
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(b"third line\nfourth\n"))
    (tmp_path / "a.txt").write_bytes(b"first line\r\nsecond")  # CRLF, no final newline
    (tmp_path / ".hidden").write_bytes(b"never read\n")
    files = find_corpus_files(tmp_path)
    assert [f.name for f in files] == ["a.txt", "b.txt.gz"]
    assert read_all(LineReader(files)) == [b"first line", b"second", b"third line", b"fourth"]


@pytest.mark.parametrize("compress", [False, True])
def test_reader_resumes_at_any_line(tmp_path, compress):
    lines = [f"line {i} ".encode() * (i % 7) for i in range(300)]
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / ("c.txt.gz" if compress else "c.txt")
    path.write_bytes(gzip.compress(data) if compress else data)
    # Tiny blocks: resuming must not depend on where blocks happened to start.
    full = read_all(LineReader([path, path], block_bytes=64))
    assert full == lines + lines
    for k in (0, 1, 17, 299, 300, 433):
        reader = LineReader([path, path], block_bytes=64)
        for _ in range(k):
            reader.read_line()
        state = reader.state_dict()
        resumed = LineReader([path, path], block_bytes=37)
        resumed.load_state_dict(state)
        assert read_all(resumed) == full[k:]


def test_long_lines_are_cut_without_splitting_words_or_characters(tmp_path):
    words = b" ".join(b"word%d" % i for i in range(5000))  # ~44 kB, no newline
    no_spaces = "é".encode() * 3000  # 6000 bytes of 2-byte characters, no space at all
    path = tmp_path / "long.txt"
    path.write_bytes(words + b"\n" + no_spaces + b"\nshort\n")
    reader = LineReader([path], max_line_bytes=1000, block_bytes=300)
    pieces = []
    while (item := reader.read_line()) is not None:
        pieces.append(item)
    assert all(len(p) <= 1000 for p, _ in pieces)
    word_pieces = [p for p, cut in pieces if p.startswith(b"word") or (cut and b"word" in p)]
    assert b" ".join(word_pieces).split() == words.split()  # cut only at spaces: no word lost or split
    accent_pieces = [p for p, _ in pieces if p.startswith("é".encode())]
    assert all(p.decode("utf-8") for p in accent_pieces)  # decodes: no character split
    assert b"".join(accent_pieces) == no_spaces
    assert pieces[-1] == (b"short", False)


def test_dirty_lines_are_counted_not_fatal(tmp_path):
    path = tmp_path / "dirty.txt"
    path.write_bytes(
        b"good line one\n"
        b"\n   \n"  # blank
        + "caf\u00e9 latin-1 line".encode("latin-1") + b"\n"  # not UTF-8: kept, counted
        + bytes(c for c in range(32) if c not in b"\n\r") * 4 + b"\n"  # control characters: skipped
        + b"x " * 2500 + b"\n"  # 2500 tokens > max_line_tokens: split
        + b"good line two\n"
    )
    stream = TextStream([path], str.split, CorpusSettings(max_line_tokens=1000), repeat=False)
    lines = []
    while (line := stream.next_line()) is not None:
        lines.append(line)
    s = stream.stats
    assert (s.empty, s.bad_encoding, s.binary, s.long) == (2, 1, 1, 1)
    assert s.bad_lines == 2
    assert [len(p) for p in lines[2]] == [1000, 1000, 500]
    assert lines[1] == [["caf\ufffd", "latin-1", "line"]]
    assert lines[-1] == [["good", "line", "two"]]


def test_a_byte_order_mark_is_not_part_of_the_first_word(tmp_path):
    # Files saved by Windows editors start with a UTF-8 BOM; files put together carry one per part.
    (tmp_path / "a.txt").write_bytes("\ufeffThe cat\r\nsat .\r\n".encode("utf-8") + "\ufeffA dog\n".encode("utf-8"))
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress("\ufeffIt ran\n".encode("utf-8")))
    stream = TextStream(find_corpus_files(tmp_path), str.split, repeat=False)
    lines = []
    while (line := stream.next_line()) is not None:
        lines.append(line[0])
    assert lines == [["The", "cat"], ["sat", "."], ["A", "dog"], ["It", "ran"]]
    assert stream.stats.bad_lines == 0


def test_the_output_folder_inside_the_corpus_folder_is_not_read_as_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("one line\n")
    out = tmp_path / "runs" / "run1"
    out.mkdir(parents=True)
    (out / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "runs" / "notes.txt").write_text("text beside the run\n")
    assert [f.name for f in find_corpus_files(tmp_path)] == ["a.txt", "notes.txt", "metrics.jsonl"]
    assert [f.name for f in find_corpus_files(tmp_path, exclude=out)] == ["a.txt", "notes.txt"]
    assert [f.name for f in find_corpus_files(tmp_path / "a.txt", exclude=out)] == ["a.txt"]
    assert len(find_corpus_files(tmp_path, exclude=tmp_path.parent / "elsewhere")) == 3
    with pytest.raises(CorpusError, match="the output folder is the corpus folder"):
        find_corpus_files(tmp_path, exclude=tmp_path)


def test_stream_shards_lines_across_processes(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("".join(f"w{i}\n\n" for i in range(10)))  # blank lines do not unbalance shards
    seen = []
    for rank in range(3):
        stream = TextStream([path], str.split, rank=rank, world_size=3, repeat=False)
        mine = []
        while (line := stream.next_line()) is not None:
            mine.append(line[0][0])
        seen.append(mine)
    assert seen[0] == ["w0", "w3", "w6", "w9"] and seen[1] == ["w1", "w4", "w7"]
    assert sorted(sum(seen, [])) == sorted(f"w{i}" for i in range(10))


def test_stream_without_usable_text_raises_instead_of_looping(tmp_path):
    path = tmp_path / "garbage.bin"
    path.write_bytes(bytes(range(1, 9)) * 50 + b"\n" + b"\x00\x01\x02\n")
    stream = TextStream([path], str.split, repeat=True)
    with pytest.raises(CorpusError, match="no usable text"):
        stream.next_line()


def test_spacy_tokenizer_option():
    tokenize = make_tokenizer("spacy-blank:en")
    assert tokenize("Don't stop,  now!") == ["Do", "n't", "stop", ",", "now", "!"]
    assert make_tokenizer("whitespace")("a  b\tc") == ["a", "b", "c"]
    with pytest.raises(TokenizerError):
        make_tokenizer("moses")


# ---- vocabulary -------------------------------------------------------------------------------


def test_vocab_follows_bilm_tf_convention(tmp_path):
    counts = Counter({"the": 10, "cat": 3, "dog": 3, "rare": 1, "<S>": 99, "a b": 50})
    vocab = build_vocab(counts, VocabSettings(max_size=6, min_count=2))
    assert vocab.tokens == ["<S>", "</S>", "<UNK>", "the", "cat", "dog"]  # by count, ties by text
    assert vocab.encode(["the", "rare", "</S>"]) == [3, UNK_ID, EOS_ID]
    vocab.to_file(tmp_path / "vocab.txt")
    assert (tmp_path / "vocab.txt").read_text().splitlines() == vocab.tokens
    assert Vocab.from_file(tmp_path / "vocab.txt").fingerprint() == vocab.fingerprint()
    (tmp_path / "bad.txt").write_text("the\ncat\n")
    with pytest.raises(VocabError, match="must start with"):
        Vocab.from_file(tmp_path / "bad.txt")
    (tmp_path / "binary.txt").write_bytes(bytes(range(11, 256)) * 200)  # a binary file: "lines" of kilobytes
    with pytest.raises(VocabError, match="must start with") as error:
        Vocab.from_file(tmp_path / "binary.txt")
    assert len(str(error.value)) < 400  # the start of each line, not all of it


# ---- windows for truncated BPTT -----------------------------------------------------------------


def test_windows_read_forward_and_reversed_chunks(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("".join(f"a{i} b{i} c{i}\n" for i in range(40)))
    vocab = Vocab([BOS_TOKEN, EOS_TOKEN, "<UNK>"] + [f"{x}{i}" for i in range(40) for x in "abc"])
    B, T, K = 2, 4, 3
    batcher = WindowBatcher(TextStream([path], str.split), vocab, B, T, K)
    batches = [batcher.next_batch() for _ in range(2 * K)]
    assert [b.new_chunk for b in batches] == [True, False, False, True, False, False]
    id_to_token = vocab.tokens
    # Rows take whole lines in turn: row 0's first chunk (K*T + 1 tokens) comes from lines 0-2.
    chunk0 = ["<S>", "a0", "b0", "c0", "</S>", "<S>", "a1", "b1", "c1", "</S>", "<S>", "a2", "b2"]
    assert len(chunk0) == K * T + 1
    first = batches[0]
    fwd_inputs = [row for row in first.char_ids[0, 0]]
    assert torch.equal(torch.stack(fwd_inputs), torch.tensor([token_to_char_ids(t) for t in chunk0[:T]]))
    assert [id_to_token[i] if i != IGNORE else None for i in first.targets[0, 0].tolist()] == ["a0", "b0", "c0", "</S>"]
    # Backward window 0 = the chunk's end, read right to left.
    rev = chunk0[::-1]
    assert torch.equal(first.char_ids[1, 0], torch.tensor([token_to_char_ids(t) for t in rev[:T]]))
    assert rev[1 : T + 1] == ["a2", "<S>", "</S>", "c1"]
    assert [id_to_token[i] if i != IGNORE else None for i in first.targets[1, 0].tolist()] == ["a2", "<S>", None, "c1"]
    # Trivial targets are not scored: forward <S> (after </S>), backward </S> (after <S>).
    fwd_targets = [t for b in batches[:K] for t in b.targets[0, 0].tolist()]
    assert BOS_ID not in fwd_targets and IGNORE in fwd_targets
    bwd_targets = [t for b in batches[:K] for t in b.targets[1, 0].tolist()]
    assert EOS_ID not in bwd_targets and IGNORE in bwd_targets
    # Across chunks the forward stream is seamless: first input of chunk 2 = last target of chunk 1.
    last_target_chunk1 = batches[K - 1].targets[0, 0, -1].item()
    first_input_chunk2 = batches[K].char_ids[0, 0, 0]
    assert torch.equal(first_input_chunk2, torch.tensor(token_to_char_ids(id_to_token[last_target_chunk1])))


def test_batcher_state_round_trip(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("".join(f"w{i} " * (1 + i % 5) + "\n" for i in range(50)))
    vocab = build_vocab(Counter(path.read_text().split()), VocabSettings())

    def make():
        return WindowBatcher(TextStream([path], str.split), vocab, 3, 5, 2)

    a = make()
    for _ in range(7):
        a.next_batch()
    b = make()
    b.load_state_dict(a.state_dict())
    for _ in range(20):  # several epochs of this small corpus
        x, y = a.next_batch(), b.next_batch()
        assert torch.equal(x.char_ids, y.char_ids) and torch.equal(x.targets, y.targets)
        assert x.new_chunk == y.new_chunk
    assert a.stream.epoch >= 1


# ---- softmax heads ------------------------------------------------------------------------------


def test_sampled_softmax_is_exact_in_eval_and_samples_log_uniform():
    torch.manual_seed(0)
    full, sampled = FullSoftmax(50, 8), SampledSoftmax(50, 8, n_samples=10)
    sampled.load_state_dict(full.state_dict())
    h, y = torch.randn(6, 8), torch.randint(0, 50, (6,))
    sampled.eval()
    assert torch.allclose(sampled(h, y), full(h, y))
    assert torch.allclose(full(h, y), -torch.log_softmax(h @ full.weight.T + full.bias, -1)[torch.arange(6), y])
    # The chance that a word is among the unique samples matches the formula used for log Q.
    trials = 4000
    hits = torch.zeros(50)
    for _ in range(trials):
        hits[sampled.sample(torch.device("cpu"))] += 1
    expected = log_expected_count(torch.arange(50), 50, 10).exp()
    assert torch.allclose(hits / trials, expected, atol=0.03)
    sampled.train()
    loss = sampled(h, y)
    assert loss.shape == (6,) and torch.isfinite(loss).all() and (loss > 0).all()


def test_sampled_softmax_padding_changes_nothing():
    # The product is padded to fixed shapes (bilm/kernel_cache.py); the loss must equal the formula on
    # the unpadded samples, and padded sample slots must never count as negatives.
    torch.manual_seed(1)
    head = SampledSoftmax(200, 8, n_samples=64)
    h, y = torch.randn(13, 8), torch.randint(0, 200, (13,))
    torch.manual_seed(5)
    sampled = head.sample(torch.device("cpu"))
    assert sampled.shape[0] < 64  # repeats were drawn, so there are pads to mask
    torch.manual_seed(5)
    loss = head(h, y)
    true = (h * head.weight[y]).sum(-1) + head.bias[y] - log_expected_count(y, 200, 64)
    neg = h @ head.weight[sampled].T + head.bias[sampled] - log_expected_count(sampled, 200, 64)
    neg = neg.masked_fill(sampled.unsqueeze(0) == y.unsqueeze(1), float("-inf"))
    expected = torch.logsumexp(torch.cat([true.unsqueeze(1), neg], 1), 1) - true
    assert torch.allclose(loss, expected, atol=1e-5)


def test_adaptive_softmax_is_normalised(tmp_path):
    torch.manual_seed(0)
    head = AdaptiveSoftmax(30, 8, cutoffs=(10, 20, 500), div_value=2.0)
    assert head.cutoffs == (10, 20)  # cutoffs past the vocabulary are dropped
    h = torch.randn(1, 8).expand(30, 8)
    with torch.no_grad():
        probs = (-head.exact_nll(h, torch.arange(30))).exp()
    assert math.isclose(float(probs.sum()), 1.0, rel_tol=1e-5)
    save_softmax(head, tmp_path / "s.hdf5")
    again = load_softmax(tmp_path / "s.hdf5")
    assert torch.allclose(again.exact_nll(h, torch.arange(30)), head.exact_nll(h, torch.arange(30)))
    with pytest.raises(ValueError, match="no cluster"):
        AdaptiveSoftmax(30, 8, cutoffs=(100,), div_value=2.0)


# ---- config -------------------------------------------------------------------------------------


def test_configs_parse_and_overrides_apply(tmp_path):
    for name in ("pretrain_demo.cfg", "pretrain_small.cfg", "pretrain_original.cfg"):
        settings = PretrainSettings.from_config(load_config(CONFIGS / name, {"paths.train": "x"}))
        assert settings.paths.train == "x"
    original = PretrainSettings.from_config(load_config(CONFIGS / "pretrain_original.cfg"))
    assert original.model == original_options()
    assert (original.softmax.type, original.softmax.n_samples, original.training.optimizer) == ("sampled", 8192, "adagrad")
    cfg = load_config(CONFIGS / "pretrain_demo.cfg", {"training.max_steps": 7, "model.lstm.dim": 48})
    settings = PretrainSettings.from_config(cfg)
    assert settings.training.max_steps == 7 and settings.model.lstm.dim == 48
    assert isinstance(settings.model, ElmoOptions)
    with pytest.raises(ConfigError, match="unknown key"):
        PretrainSettings.from_config(load_config(CONFIGS / "pretrain_demo.cfg", {"training.max_stepz": 7}))
    with pytest.raises(ConfigError, match="integer"):
        PretrainSettings.from_config(load_config(None, {"training.batch_size": "big"}))
    bad = tmp_path / "bad.cfg"
    bad.write_text("[training]\nbatchsize = 3\n")
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.cfg")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_corpus_that_is_a_named_pipe_is_named_as_such(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(CorpusError, match=r"pipe: a named pipe \(FIFO\), not a text file or a folder"):
        find_corpus_files(tmp_path / "pipe")
