from __future__ import annotations

import json
import warnings
from pathlib import Path

import medmnist
import numpy as np
import pytest
import torch

from medvit import data as data_mod
from medvit.data import (
    DATASETS,
    SIZES,
    DataError,
    dataset_info,
    dataset_path,
    describe,
    load_dataset,
    resolve_root,
)
from medvit.synthetic import write_synthetic

REAL_FLAGS = ("retinamnist", "pneumoniamnist")  # real files in the synthetic_root fixture
SYNTHETIC_N = (64, 16, 16)  # per-split sizes of its synthetic files (tests/conftest.py)


def _md5_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "MD5 mismatch" in str(w.message)]


def test_datasets_are_the_twelve_2d_flags_in_paper_order():
    assert len(DATASETS) == 12
    assert DATASETS[0] == "pathmnist" and DATASETS[-1] == "organsmnist"
    assert set(DATASETS) == {f for f in medmnist.INFO if not f.endswith("3d")}
    assert SIZES == (28, 64, 128, 224)


@pytest.mark.parametrize("flag", DATASETS)
def test_dataset_info_matches_medmnist(flag):
    info = dataset_info(flag)
    raw = medmnist.INFO[flag]
    assert info.flag == flag and info.python_class == raw["python_class"]
    assert info.task == raw["task"]
    assert info.num_classes == len(raw["label"])
    assert info.channels == raw["n_channels"]
    assert info.n_samples == raw["n_samples"]
    assert info.md5 == {28: raw["MD5"], 64: raw["MD5_64"], 128: raw["MD5_128"], 224: raw["MD5_224"]}


def test_known_task_facts():
    assert dataset_info("chestmnist").task == "multi-label, binary-class"
    assert dataset_info("chestmnist").num_classes == 14
    assert dataset_info("retinamnist").task == "ordinal-regression"
    assert dataset_info("pneumoniamnist").task == "binary-class"
    assert dataset_info("pneumoniamnist").num_classes == 2


@pytest.mark.parametrize("flag", DATASETS)
def test_every_flag_loads(flag, synthetic_root):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        d = load_dataset(flag, root=synthetic_root)
    info = dataset_info(flag)
    assert d.info == info
    md5_msgs = _md5_warnings(record)
    if flag in REAL_FLAGS:
        assert md5_msgs == []
        expected_n = info.n_samples
    else:
        assert len(md5_msgs) == 1 and flag in md5_msgs[0] and info.md5[28] in md5_msgs[0]
        expected_n = dict(zip(("train", "val", "test"), SYNTHETIC_N))
    for split in ("train", "val", "test"):
        x, y = d.images[split], d.labels[split]
        n = expected_n[split]
        assert x.dtype == torch.uint8 and x.is_contiguous()
        assert tuple(x.shape) == (n, info.channels, 28, 28)
        if info.task == "multi-label, binary-class":
            assert y.dtype == torch.float32 and tuple(y.shape) == (n, 14)
            assert set(y.unique().tolist()) <= {0.0, 1.0}
        else:
            assert y.dtype == torch.int64 and tuple(y.shape) == (n,)
            assert 0 <= int(y.min()) and int(y.max()) < info.num_classes
    line = describe(d)
    assert "\n" not in line and flag in line and info.task in line and "28 px" in line


def test_real_files_content_matches_the_npz(real_root):
    d = load_dataset("retinamnist", root=real_root)
    with np.load(real_root / "retinamnist.npz") as z:
        raw_x, raw_y = z["val_images"], z["val_labels"]
    assert torch.equal(d.images["val"].permute(0, 2, 3, 1), torch.from_numpy(raw_x))
    assert torch.equal(d.labels["val"], torch.from_numpy(raw_y[:, 0].astype(np.int64)))
    p = load_dataset("pneumoniamnist", root=real_root)
    with np.load(real_root / "pneumoniamnist.npz") as z:
        assert torch.equal(p.images["test"][:, 0], torch.from_numpy(z["test_images"]))
    assert set(d.labels["train"].unique().tolist()) == {0, 1, 2, 3, 4}


def test_real_files_do_not_warn(real_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for flag in REAL_FLAGS:
            load_dataset(flag, root=real_root)


def test_synthetic_file_warns_with_expected_and_actual_md5(tmp_path):
    path = write_synthetic("dermamnist", tmp_path, n_per_split=(7, 7, 7))
    actual = data_mod._hash_file(path)
    with pytest.warns(UserWarning, match="MD5 mismatch") as record:
        load_dataset("dermamnist", root=tmp_path)
    (msg,) = _md5_warnings(record)
    assert str(path) in msg and dataset_info("dermamnist").md5[28] in msg and actual in msg
    assert "\n" not in msg


def test_md5_computed_once_per_process_and_persisted(tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "md5.json"
    monkeypatch.setenv(data_mod.MD5_CACHE_ENV, str(cache))
    monkeypatch.setattr(data_mod, "_MD5_MEMO", {})
    path = write_synthetic("bloodmnist", tmp_path / "root", n_per_split=(8, 8, 8))
    calls = []
    real_hash = data_mod._hash_file
    monkeypatch.setattr(data_mod, "_hash_file", lambda p: calls.append(p) or real_hash(p))
    for _ in range(3):
        with pytest.warns(UserWarning, match="MD5 mismatch"):
            load_dataset("bloodmnist", root=tmp_path / "root")
    assert len(calls) == 1
    entry = json.loads(cache.read_text())[str(path.resolve())]
    assert entry["md5"] == real_hash(path) and entry["size"] == path.stat().st_size
    # a new process: empty in-process memo, verdict read back from the JSON cache
    monkeypatch.setattr(data_mod, "_MD5_MEMO", {})
    with pytest.warns(UserWarning, match="MD5 mismatch"):
        load_dataset("bloodmnist", root=tmp_path / "root")
    assert len(calls) == 1
    # rewriting the file (new mtime/size) invalidates both caches
    write_synthetic("bloodmnist", tmp_path / "root", n_per_split=(9, 8, 8))
    with pytest.warns(UserWarning, match="MD5 mismatch"):
        load_dataset("bloodmnist", root=tmp_path / "root")
    assert len(calls) == 2


def test_unwritable_md5_cache_is_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv(data_mod.MD5_CACHE_ENV, str(blocker / "md5.json"))
    monkeypatch.setattr(data_mod, "_MD5_MEMO", {})
    write_synthetic("breastmnist", tmp_path, n_per_split=(4, 4, 4))
    with pytest.warns(UserWarning, match="MD5 mismatch"):
        d = load_dataset("breastmnist", root=tmp_path)
    assert d.images["train"].shape[0] == 4


def test_corrupt_md5_cache_is_ignored(tmp_path, monkeypatch):
    cache = tmp_path / "md5.json"
    cache.write_text("{not json")
    monkeypatch.setenv(data_mod.MD5_CACHE_ENV, str(cache))
    monkeypatch.setattr(data_mod, "_MD5_MEMO", {})
    write_synthetic("breastmnist", tmp_path, n_per_split=(4, 4, 4))
    with pytest.warns(UserWarning, match="MD5 mismatch"):
        load_dataset("breastmnist", root=tmp_path)
    assert isinstance(json.loads(cache.read_text()), dict)


@pytest.mark.parametrize("size", [28, 64])
def test_missing_file_message(tmp_path, size):
    with pytest.raises(DataError) as exc:
        load_dataset("pathmnist", root=tmp_path, size=size)
    msg = str(exc.value)
    name = "pathmnist.npz" if size == 28 else "pathmnist_64.npz"
    assert "\n" not in msg
    assert str(tmp_path / name) in msg
    assert f"root searched: {tmp_path}" in msg
    cmd = f"medsweep data download --dataset pathmnist --data-root {tmp_path}"
    assert cmd in msg
    assert ("--size 64" in msg) == (size == 64)


def test_unknown_flag_and_size(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'mnist'.*pathmnist.*organsmnist"):
        load_dataset("mnist", root=tmp_path)
    with pytest.raises(DataError, match="organmnist3d"):
        dataset_info("organmnist3d")
    with pytest.raises(DataError, match="allowed: 28, 64, 128, 224"):
        load_dataset("pathmnist", root=tmp_path, size=32)
    with pytest.raises(DataError, match="allowed: 28, 64, 128, 224"):
        write_synthetic("pathmnist", tmp_path, size=100)


def test_resolve_root(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "env"))
    assert resolve_root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root(None) == tmp_path / "env"
    monkeypatch.delenv("MEDMNIST_ROOT")
    assert resolve_root(None) == Path(medmnist.info.DEFAULT_ROOT)
    assert resolve_root(None) == Path("~/.medmnist").expanduser()


def test_load_uses_env_root(monkeypatch, synthetic_root):
    monkeypatch.setenv("MEDMNIST_ROOT", str(synthetic_root))
    d = load_dataset("retinamnist")
    assert d.path == synthetic_root / "retinamnist.npz"
    assert d.images["train"].shape == (1080, 3, 28, 28)


def test_dataset_path_naming(tmp_path):
    assert dataset_path("octmnist", tmp_path, 28) == tmp_path / "octmnist.npz"
    assert dataset_path("octmnist", tmp_path, 224) == tmp_path / "octmnist_224.npz"


def test_subset(real_root):
    d = load_dataset("retinamnist", root=real_root)
    s = d.subset(50, seed=3)
    assert {k: v.shape[0] for k, v in s.images.items()} == {"train": 50, "val": 50, "test": 50}
    assert {k: v.shape[0] for k, v in s.labels.items()} == {"train": 50, "val": 50, "test": 50}
    assert s.info is d.info and all(t.is_contiguous() for t in s.images.values())
    again = d.subset(50, seed=3)
    other = d.subset(50, seed=4)
    assert all(torch.equal(s.images[k], again.images[k]) for k in s.images)
    assert not torch.equal(s.images["train"], other.images["train"])
    # rows stay paired with their labels
    flat = d.images["train"].flatten(1)
    for row, label in zip(s.images["train"].flatten(1)[:5], s.labels["train"][:5]):
        idx = int((flat == row).all(dim=1).nonzero()[0])
        assert int(d.labels["train"][idx]) == int(label)
    # larger than a split keeps the split; None keeps everything; the original is untouched
    big = d.subset(500, seed=0)
    assert big.images["train"].shape[0] == 500 and big.images["val"].shape[0] == 120
    assert d.subset(None, seed=0).images["train"].shape[0] == 1080
    assert d.images["train"].shape[0] == 1080
    with pytest.raises(DataError):
        d.subset(0, seed=0)


@pytest.mark.parametrize("flag", ["chestmnist", "bloodmnist", "octmnist"])
def test_size_64_synthetic(tmp_path, flag):
    path = write_synthetic(flag, tmp_path, size=64, n_per_split=(20, 6, 6), seed=1)
    assert path.name == f"{flag}_64.npz"
    with pytest.warns(UserWarning, match="MD5 mismatch") as record:
        d = load_dataset(flag, root=tmp_path, size=64)
    assert dataset_info(flag).md5[64] in _md5_warnings(record)[0]
    info = dataset_info(flag)
    assert d.images["train"].shape == (20, info.channels, 64, 64)
    assert d.size == 64 and "64 px" in describe(d)
    with pytest.raises(DataError, match="not found"):
        load_dataset(flag, root=tmp_path, size=28)


def _rewrite(path: Path, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    for k, v in list(arrays.items()):
        if v is None:
            del arrays[k]
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: {"train_images": a["train_images"][..., 0]}, r"train_images has shape \(8, 28, 28\); expected \(N, 28, 28, 3\)"),
        (lambda a: {"val_labels": np.zeros((8, 2), np.uint8)}, r"val_labels has shape \(8, 2\); expected \(8, 1\)"),
        (lambda a: {"test_labels": np.full((8, 1), 9, np.uint8)}, r"test_labels range \[9, 9\] outside \[0, 6\]"),
        (lambda a: {"train_images": a["train_images"].astype(np.float32)}, "dtype float32; expected uint8"),
        (lambda a: {"test_labels": None}, "missing arrays test_labels"),
    ],
)
def test_malformed_files_raise_one_line(tmp_path, change, match):
    path = write_synthetic("dermamnist", tmp_path, n_per_split=(8, 8, 8))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    _rewrite(path, **change(arrays))
    with pytest.warns(UserWarning, match="MD5 mismatch"):
        with pytest.raises(DataError, match=match) as exc:
            load_dataset("dermamnist", root=tmp_path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_chest_labels_wrong_count(tmp_path):
    path = write_synthetic("chestmnist", tmp_path, n_per_split=(8, 8, 8))
    _rewrite(path, train_labels=np.zeros((8, 1), np.uint8))
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"expected \(8, 14\)"):
        load_dataset("chestmnist", root=tmp_path)


def test_not_an_npz(tmp_path):
    (tmp_path / "pathmnist.npz").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="not a readable"):
        load_dataset("pathmnist", root=tmp_path)


# ---------------------------------------------------------------------------- synthetic files


@pytest.mark.parametrize("flag", DATASETS)
def test_synthetic_format_matches_real_format(flag, tmp_path, real_root):
    path = write_synthetic(flag, tmp_path, n_per_split=(30, 12, 12))
    info = dataset_info(flag)
    with np.load(real_root / "retinamnist.npz") as real:
        real_label_dtype = real["train_labels"].dtype
    with np.load(path) as z:
        assert sorted(z.files) == sorted(
            f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")
        )
        for split, n in zip(("train", "val", "test"), (30, 12, 12)):
            x, y = z[f"{split}_images"], z[f"{split}_labels"]
            assert x.dtype == np.uint8
            assert x.shape == ((n, 28, 28) if info.channels == 1 else (n, 28, 28, 3))
            assert y.dtype == real_label_dtype
            if info.task == "multi-label, binary-class":
                assert y.shape == (n, 14) and set(np.unique(y)) <= {0, 1}
                assert (y.max(0) == 1).all() and (y.min(0) == 0).all()  # every label on and off
            else:
                assert y.shape == (n, 1)
                assert set(np.unique(y)) == set(range(info.num_classes))  # every class present


def test_synthetic_is_deterministic_and_seeded(tmp_path):
    a = write_synthetic("pathmnist", tmp_path / "a", seed=5)
    b = write_synthetic("pathmnist", tmp_path / "b", seed=5)
    c = write_synthetic("pathmnist", tmp_path / "c", seed=6)
    with np.load(a) as za, np.load(b) as zb, np.load(c) as zc:
        assert all(np.array_equal(za[k], zb[k]) for k in za.files)
        assert not np.array_equal(za["train_images"], zc["train_images"])


@pytest.mark.parametrize("flag", ["retinamnist", "chestmnist", "organamnist"])
def test_synthetic_labels_are_learnable(flag, tmp_path):
    """A trivial classifier fitted on train beats chance clearly on test."""
    write_synthetic(flag, tmp_path, n_per_split=(200, 50, 100), seed=2)
    with pytest.warns(UserWarning):
        d = load_dataset(flag, root=tmp_path)
    xtr, xte = d.images["train"].float().flatten(1), d.images["test"].float().flatten(1)
    ytr, yte = d.labels["train"], d.labels["test"]
    if d.info.task == "multi-label, binary-class":
        # least squares per label
        a = torch.cat([xtr, torch.ones(len(xtr), 1)], 1)
        w = torch.linalg.lstsq(a, ytr).solution
        pred = (torch.cat([xte, torch.ones(len(xte), 1)], 1) @ w) > 0.5
        assert (pred.float() == yte).float().mean() > 0.9
    else:
        # nearest class mean of the central brightness
        def feat(x):
            s = int(x.shape[1] ** 0.5) if d.info.channels == 1 else int((x.shape[1] / 3) ** 0.5)
            imgs = x.view(len(x), d.info.channels, s, s)
            return imgs[:, :, s // 3 : 2 * s // 3, s // 3 : 2 * s // 3].mean(dim=(1, 2, 3))

        ftr, fte = feat(xtr), feat(xte)
        means = torch.stack([ftr[ytr == k].mean() for k in range(d.info.num_classes)])
        pred = (fte[:, None] - means[None]).abs().argmin(1)
        acc = (pred == yte).float().mean()
        assert acc > 2.0 / d.info.num_classes


# ---------------------------------------------------------------------------- download (faked)


def test_download_goes_through_medmnist_class(tmp_path, monkeypatch):
    from medvit.data import download_dataset

    calls = []

    class FakePath:
        def __init__(self, **kwargs):
            calls.append(kwargs)
            write_synthetic("pathmnist", kwargs["root"], size=kwargs["size"], n_per_split=(4, 4, 4))

    monkeypatch.setattr(medmnist, "PathMNIST", FakePath)
    root = tmp_path / "new" / "root"
    path = download_dataset("pathmnist", root, 64)
    assert path == root / "pathmnist_64.npz" and path.is_file()
    assert calls == [{"split": "test", "root": str(root), "size": 64, "download": True}]


def test_download_failure_is_one_line_data_error(tmp_path, monkeypatch):
    from medvit.data import download_dataset

    class Offline:
        def __init__(self, **kwargs):
            raise RuntimeError("\n   Automatic download failed!\n   Please download it manually.\n")

    monkeypatch.setattr(medmnist, "RetinaMNIST", Offline)
    with pytest.raises(DataError) as exc:
        download_dataset("retinamnist", tmp_path, 28)
    msg = str(exc.value)
    assert "\n" not in msg and "retinamnist" in msg and str(tmp_path) in msg and "Automatic download failed" in msg


def test_failed_download_leaves_no_new_folder_and_keeps_old_ones(tmp_path, monkeypatch):
    from medvit.data import download_dataset

    class Offline:
        def __init__(self, **kwargs):
            raise RuntimeError("Automatic download failed!")

    monkeypatch.setattr(medmnist, "RetinaMNIST", Offline)
    (tmp_path / "kept").mkdir()  # a folder that was there before stays, empty or not
    with pytest.raises(DataError):
        download_dataset("retinamnist", tmp_path / "kept" / "new" / "root", 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert not any((tmp_path / "kept").iterdir())


def test_pickles_as_numpy_and_back(real_root):
    import pickle

    data = load_dataset("retinamnist", root=real_root)
    copy = pickle.loads(pickle.dumps(data))
    assert copy.info == data.info
    for split in data.images:
        assert torch.equal(copy.images[split], data.images[split])
        assert torch.equal(copy.labels[split], data.labels[split])
        assert copy.images[split].dtype == data.images[split].dtype


def test_with_train_subset_trains_on_what_subset_draws_and_keeps_val_and_test_whole(retina_data):
    data = retina_data.with_train_subset(100, seed=3)
    drawn = retina_data.subset(100, seed=3)
    assert torch.equal(data.images["train"], drawn.images["train"])
    assert torch.equal(data.labels["train"], drawn.labels["train"])
    for split in ("val", "test"):
        assert torch.equal(data.images[split], retina_data.images[split])
        assert len(data.labels[split]) > 100
    assert retina_data.with_train_subset(None, seed=3) is retina_data


def test_medmnist_info_is_read_without_the_package_and_falls_back_to_it(tmp_path, monkeypatch):
    data_mod._medmnist_info.cache_clear()
    monkeypatch.setattr(data_mod, "_medmnist_info", data_mod._medmnist_info.__wrapped__)
    assert data_mod._medmnist_info().INFO == medmnist.INFO and data_mod._medmnist_info() is not medmnist
    # a medmnist without info.py: the package itself
    elsewhere = type("Spec", (), {"origin": str(tmp_path / "__init__.py")})()
    monkeypatch.setattr(data_mod.importlib.util, "find_spec", lambda name: elsewhere)
    assert data_mod._medmnist_info() is medmnist
    monkeypatch.setattr(data_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"^medmnist is not installed: pip install 'medmnist>=3.0'"):
        data_mod._medmnist_info()
