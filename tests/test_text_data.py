"""Text data for `task: language_model`: byte tokens in context windows (y is x shifted by one), contiguous
train/validation/test blocks, the `fortunes` corpus from Debian's package, any UTF-8 file by path, your
loader's token windows, and every bad input as one line naming its key."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, cli_main
from user_modules import TOKENS

from initsweep.catalog.datasets import BYTE_VOCAB, DATASETS
from initsweep.config import ConfigError, DataConfig, parse_config
from initsweep.config.data import DATA_CHECKED, window_count
from initsweep.engine.data import DataError, lineage, load_configured, load_user
from initsweep.engine.text import corpus_bytes, token_windows

LM = "language_model"
FORTUNES = DATASETS["fortunes"]
# Several scripts, one to four bytes a character: the windows cut characters apart, which bytes allow.
MULTIBYTE = "Grüße aus Köln, naïve café; 日本語のテキスト; Ελληνικά; emoji 🙂🚀. "


def sweep(data: dict, **more) -> dict:
    """A language-model sweep config on `data` (as YAML gives it)."""
    return {
        "name": "text",
        "seeds": [0],
        "task": LM,
        "model": {"name": "gpt"},
        "schemes": ["xavier_uniform"],
        "train": {"epochs": 1, "batch_size": 4},
        "data": data,
    } | more


def stream_of(split) -> torch.Tensor:
    """The token stream a split's windows cover: each window's inputs, then the last window's last target."""
    return torch.cat([split.x.reshape(-1), split.y[-1:, -1]])


def one_line_error(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "multibyte.txt"
    path.write_text(MULTIBYTE * 40, encoding="utf-8")
    return path


# --- the window contract --------------------------------------------------------------------------------


def test_windows_are_the_stream_shifted_by_one_and_predict_each_token_once():
    tokens = torch.arange(1000) % 256
    for context in (1, 7, 128, 999):
        x, y = token_windows(tokens, context)
        n = window_count(1000, context)
        assert x.shape == y.shape == (n, context) and x.dtype == y.dtype == torch.int64
        assert n == 999 // context
        assert torch.equal(x.reshape(-1), tokens[: n * context])  # stride context: window i starts at i*context
        assert torch.equal(y.reshape(-1), tokens[1 : n * context + 1])  # each target once, in order
        assert torch.equal(y[:, :-1], x[:, 1:])  # within a window, y is x shifted by one
    x, y = token_windows(tokens, 1000)  # 1000 tokens hold no window of 1001
    assert x.shape == (0, 1000)


def test_fortunes_loads_from_the_debian_package_as_three_contiguous_disjoint_blocks():
    corpus = corpus_bytes(FORTUNES)
    assert len(corpus) == FORTUNES.train_size == 2_576_674  # the registry's size is the package's
    assert "Mark Twain" in corpus.decode("utf-8")
    config = DataConfig(dataset="fortunes")
    data = load_configured(config, LM)
    assert data.num_classes == BYTE_VOCAB == 256 and data.input_shape == (config.context,) == (128,)
    tokens = torch.tensor(list(corpus))
    n_train, n_val, n_test = config.text_blocks()
    assert (n_train, n_val, n_test) == (1_803_672, 515_335, 257_667)  # 70/20/10 of the stream
    start = 0
    for split, block in zip((data.train, data.val, data.test), (n_train, n_val, n_test), strict=True):
        assert split.x.dtype == split.y.dtype == torch.int64
        assert len(split) == window_count(block, 128)
        covered = stream_of(split)
        assert torch.equal(covered, tokens[start : start + len(covered)])  # the block, from its first token
        assert len(covered) <= block  # never into the next block: the blocks share no token
        start += block


@pytest.mark.parametrize(
    "changes,windows",
    [
        ({"limit": 10_000, "context": 64}, (6999 // 64, 1999 // 64, 999 // 64)),  # 7000 / 2000 / 1000 tokens
        (
            {"limit": 10_000, "context": 64, "val_fraction": 0.1, "test_fraction": 0.3},
            (93, 15, 46),
        ),  # 6000 / 1000 / 3000
        ({"limit": 5_001, "context": 10}, (350, 99, 49)),  # 3501 / 1000 / 500 tokens
        ({"context": 1024}, (1761, 503, 251)),
    ],
)
def test_split_sizes_follow_limit_context_and_fractions(changes, windows):
    config = DataConfig(dataset="fortunes", **changes)
    data = load_configured(config, LM)
    assert (len(data.train), len(data.val), len(data.test)) == windows
    assert data.input_shape == (config.context,)
    blocks = config.text_blocks()
    assert sum(blocks) == (config.limit or FORTUNES.train_size)
    assert tuple(window_count(b, config.context) for b in blocks) == windows


def test_loading_is_deterministic_and_the_lineage_tells_splits_apart():
    config = DataConfig(dataset="fortunes", limit=50_000, context=32)
    first = load_configured(config, LM)
    corpus_bytes.cache_clear()  # read the files again
    again = load_configured(config, LM)
    assert all(torch.equal(a, b) for a, b in zip(first.tensors(), again.tensors(), strict=True))
    seen = lineage(config, first)
    assert seen == lineage(config, again)
    assert seen.name == "fortunes" and seen.source == FORTUNES.local_dir
    assert seen.sizes == {"train": len(first.train), "val": len(first.val), "test": len(first.test)}
    assert seen.settings["context"] == 32 and seen.settings["test_fraction"] == 0.1 and seen.settings["limit"] == 50_000
    wider = DataConfig(dataset="fortunes", limit=50_000, context=64)
    assert lineage(wider, load_configured(wider, LM)).digest != seen.digest


def test_any_utf8_file_by_path_reads_its_bytes_multibyte_characters_included(text_file):
    raw = text_file.read_bytes()
    assert max(raw) > 127 and len(raw) > len(text_file.read_text(encoding="utf-8"))  # multi-byte characters
    config = parse_config(sweep({"path": str(text_file), "context": 16})).data
    assert config.dataset == "text_file" and config.tokens == len(raw)
    data = load_configured(config, LM)
    assert data.num_classes == 256 and data.input_shape == (16,)
    n_train = config.text_blocks()[0]
    tokens = torch.tensor(list(raw))
    assert torch.equal(stream_of(data.train), tokens[: len(stream_of(data.train))])
    assert torch.equal(stream_of(data.val), tokens[n_train : n_train + len(stream_of(data.val))])
    assert int(data.train.x.max()) > 127  # bytes of é, 日, 🙂: tokens above ASCII
    assert bytes(stream_of(data.train).tolist()).decode("utf-8", errors="ignore").startswith("Grüße aus Köln")
    seen = lineage(config, data)
    assert seen.name == "multibyte.txt" and seen.source == str(text_file.resolve())


def test_a_changed_file_is_read_again(text_file):
    assert DataConfig(path=str(text_file)).tokens == len(text_file.read_bytes())
    text_file.write_bytes(b"\x80" * 5000)  # another size: the cache's key changes
    with pytest.raises(ValueError, match=r"is not UTF-8 text \(byte 0x80 at offset 0"):
        DataConfig(path=str(text_file))


def test_utf8_is_checked_in_pieces_with_the_offset_of_the_first_bad_byte(tmp_path):
    piece = 1 << 20  # the reader's piece: a character cut across it is still one character
    across = tmp_path / "across.txt"
    across.write_bytes(b"a" * (piece - 1) + "é".encode() + "日本".encode() * 100)
    assert DataConfig(path=str(across), context=512).tokens == piece + 1 + 600
    for content, offset in ((b"a" * (piece - 1) + b"\xc3(" + b"b" * 300, piece - 1), (b"a" * 300 + b"\xe6\x97", 300)):
        broken = tmp_path / f"broken{offset}.txt"
        broken.write_bytes(content)
        with pytest.raises(ValueError, match=rf"is not UTF-8 text \(byte 0x\w\w at offset {offset}:"):
            DataConfig(path=str(broken))


def test_a_worker_given_data_checked_does_not_read_the_file(tmp_path):
    missing = str(tmp_path / "only-on-the-driver.txt")
    config = DataConfig.model_validate({"path": missing}, context={DATA_CHECKED: True})
    assert config.tokens is None and config.split_problem(10_000) is None
    with pytest.raises(ValueError, match=r"Value error, path: no file at"):
        DataConfig(path=missing)


def test_the_registry_says_each_datasets_task():
    assert DATASETS["fashion_mnist"].task == "classification" and not DATASETS["fashion_mnist"].text
    assert FORTUNES.task == LM and FORTUNES.num_classes == 256 and FORTUNES.apt_package == "fortunes"
    assert DataConfig().task == "classification" and DataConfig(dataset="fortunes").task == LM
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "apt_install dataset-fashion-mnist fortunes" in setup


def test_text_is_refused_for_classification_and_images_for_a_language_model(text_file):
    with pytest.raises(ConfigError, match=r"^task: classification cannot train on fortunes, which is text"):
        load_configured(DataConfig(dataset="fortunes"))
    with pytest.raises(ConfigError, match=r"^task: classification cannot train on '.*multibyte.txt', which is text"):
        load_configured(DataConfig(path=str(text_file)))
    assert DataConfig().task_problem(LM).startswith("task: language_model cannot train on fashion_mnist, which is")


def test_a_missing_corpus_names_the_folder_and_the_apt_package(tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.setitem(DATASETS, "fortunes", dataclasses.replace(FORTUNES, local_dir=str(tmp_path / "none")))
    with pytest.raises(DataError) as err:
        load_configured(DataConfig(dataset="fortunes"), LM)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "none") in message
    assert message.endswith("install them with: apt-get install -y fortunes")
    assert "missing art, ascii-art, computers and 40 more" in message


# --- bad input: one line, naming the key ---------------------------------------------------------------


def bad_files(tmp_path: Path) -> dict[str, str]:
    files = {"empty": b"", "latin1": "café".encode("latin-1") * 100, "short": b"just a few words\n"}
    paths = {}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        paths[name] = str(tmp_path / name)
    paths["missing"], paths["folder"] = str(tmp_path / "no-such.txt"), str(tmp_path)
    return paths


BAD = [
    # (data section, given the bad files; more top-level keys) -> the start of the error line
    (lambda f: {"path": f["missing"]}, {}, "data.path: no file at '"),
    (lambda f: {"path": f["folder"]}, {}, "data.path: '"),
    (lambda f: {"path": f["empty"]}, {}, "data.path: '"),
    (lambda f: {"path": f["latin1"]}, {}, "data.path: '"),
    (lambda f: {"path": f["short"]}, {}, "data.path: the 17 tokens of '"),
    (lambda f: {"dataset": "text_file"}, {}, "data.path: missing (dataset: text_file needs path: FILE"),
    (lambda f: {"dataset": "fashion_mnist", "path": f["short"]}, {}, "data.path: only for dataset: text_file"),
    (lambda f: {"dataset": "fortunes", "context": 3_000_000}, {}, "data.context: the 2576674 tokens of fortunes leave"),
    (lambda f: {"dataset": "fortunes", "limit": 200}, {}, "data.limit: the first 200 tokens of fortunes leave 140"),
    (lambda f: {"dataset": "fortunes", "limit": 3_000_000}, {}, "data.limit: 3000000 is more than the 2576674 tokens"),
    (lambda f: {"dataset": "fortunes", "normalize": True}, {}, "data.normalize: text is token ids, not pixels"),
    (lambda f: {"dataset": "fortunes", "split_seed": 4}, {}, "data.split_seed: text is split in stream order"),
    (lambda f: {"dataset": "fortunes", "test_fraction": 0.9}, {}, "data.test_fraction: val_fraction 0.2 and"),
    (lambda f: {"dataset": "fortunes", "test_fraction": 0}, {}, "data.test_fraction: input should be greater than 0"),
    (lambda f: {"dataset": "fortunes", "context": 0}, {}, "data.context: input should be greater than 0"),
    (lambda f: {"dataset": "fortunes", "val_fraction": 0.0005, "limit": 100_000}, {}, "data.val_fraction: the first"),
    (lambda f: {"dataset": "fashion_mnist", "context": 64}, {"task": "classification"}, "data.context: only for text"),
    (lambda f: {"dataset": "fortunes", "limit": 2000}, {"train": {"batch_size": 64}}, "data.limit: the first 2000"),
    (
        lambda f: {"dataset": "fortunes", "context": 2048},
        {"train": {"batch_size": 4096}},
        "train.batch_size: the 2576674",
    ),
]


@pytest.mark.parametrize("data,more,message", BAD, ids=[f"{i}-{m.split(':')[0]}" for i, (_, _, m) in enumerate(BAD)])
def test_bad_text_input_is_one_line_naming_the_key(tmp_path, data, more, message):
    assert one_line_error(sweep(data(bad_files(tmp_path)), **more)).startswith(message)


def test_bad_file_messages_say_what_is_wrong(tmp_path):
    files = bad_files(tmp_path)
    assert one_line_error(sweep({"path": files["folder"]})).endswith("is a folder, not a text file")
    assert one_line_error(sweep({"path": files["empty"]})).endswith("is empty; a language model needs text")
    latin1 = one_line_error(sweep({"path": files["latin1"]}))
    assert "is not UTF-8 text (byte 0xe9 at offset 3" in latin1
    short = one_line_error(sweep({"path": files["short"]}))
    assert short.endswith("each split needs at least one window of context + 1 = 129 tokens")


def test_the_cli_refuses_a_bad_text_file_with_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "environ", os.environ.copy())
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_bytes(b"\xff\xfeu\x00t\x00f\x00-\x001\x006\x00" * 200)  # UTF-16, not UTF-8
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(sweep({"path": "corpus.txt"})))
    before = sorted(p.name for p in tmp_path.iterdir())
    code = cli_main()(["lm.yaml", "--storage-path", str(tmp_path / "storage")])
    out, err = capsys.readouterr()
    assert code == 2, err[-2000:]
    assert err.count("\n") == 1 and err.startswith("error: data.path: 'corpus.txt' is not UTF-8 text (byte 0xff"), err
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no mlflow.db, storage, journal


def test_loaded_sizes_do_not_override_a_texts_known_size():
    config = DataConfig(dataset="fortunes", limit=20_000, context=32)
    # check_sweep passes the loaded windows as train_size; a text's own size (tokens) decides
    assert config.split_problem(16, train_size=3, num_classes=256) is None
    assert config.split_problem(10_000).startswith("data.limit: the first 20000 tokens of fortunes leave 14000")


# --- your loader's token windows ------------------------------------------------------------------------


@pytest.fixture
def tokens_module(tmp_path, monkeypatch) -> str:
    name = f"tokens_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TOKENS)
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    return name


def test_a_loader_of_token_windows_trains_a_language_model(tokens_module):
    config = DataConfig(dataset="import", target=f"{tokens_module}:load")
    data = load_configured(config, LM)
    module = sys.modules[tokens_module]
    x, y, xt, yt = module.load()
    assert (len(data.train), len(data.val), len(data.test)) == (32, 8, 10)
    assert torch.equal(data.train.x, x[:32]) and torch.equal(data.val.x, x[32:])  # the last 8, in order
    assert torch.equal(data.val.y, y[32:]) and torch.equal(data.test.y, torch.as_tensor(yt).long())
    assert all(t.dtype == torch.int64 for t in data.tensors())  # the int32 test windows too
    ids = torch.cat([t.reshape(-1) for t in (x, y, torch.as_tensor(xt), torch.as_tensor(yt))])
    assert data.num_classes == 1 + int(ids.max()) and data.input_shape == (8,)
    limited = load_configured(DataConfig(dataset="import", target=f"{tokens_module}:load", limit=20), LM)
    assert (len(limited.train), len(limited.val)) == (16, 4) and torch.equal(limited.val.x, x[16:20])
    seen = lineage(config, data)
    assert seen.name == f"{tokens_module}:load" and seen.sizes == {"train": 32, "val": 8, "test": 10}


@pytest.mark.parametrize(
    "loader,changes,message",
    [
        ("float_tokens", {}, "data.target: x_train should be integer token ids, not torch.float32"),
        ("shifted_shape", {}, "data.target: y_train has shape (40, 7); expected (40, 8), the next token of each of"),
        ("other_context", {}, "data.target: x_test's windows are 4 tokens, x_train's 8; the model has one context"),
        ("negative_id", {}, "data.target: y_train has token id -7; ids count from 0"),
        (
            "flat",
            {},
            "data.target: x_train should be token windows (N, context), one row per window (got shape (320,))",
        ),
        ("load", {"limit": 41}, "data.limit: 41 is more than the 40 train windows of"),
        ("load", {"limit": 1}, "data.limit: 1 windows leave 1 train and 0 validation windows"),
        ("load", {"split_seed": 3}, "data.split_seed: text is split in stream order"),
        ("load", {"normalize": True}, "data.normalize: text is token ids, not pixels"),
    ],
)
def test_bad_token_windows_are_one_line(tokens_module, loader, changes, message):
    config = DataConfig(dataset="import", target=f"{tokens_module}:{loader}", **changes)
    with pytest.raises(ConfigError) as err:
        load_user(config, task=LM)
    assert "\n" not in str(err.value) and str(err.value).startswith(message), str(err.value)


def test_the_classification_path_still_wants_labels(tokens_module):
    config = DataConfig(dataset="import", target=f"{tokens_module}:load")
    with pytest.raises(ConfigError, match=r"^data.target: y_train has shape \(40, 8\); expected \(40,\), a label per"):
        load_configured(config)  # task defaults to classification
    assert config.split_problem(16, train_size=40, num_classes=50, task=LM) is None  # 32 train windows
    assert config.split_problem(16, train_size=40, num_classes=50).startswith("data.val_fraction: 40 images")
    assert config.split_problem(64, train_size=40, task=LM).startswith(
        "train.batch_size: 40 windows leave 32 train windows (val_fraction 0.2), fewer than one batch of 64"
    )
