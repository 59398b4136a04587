"""The bad-input catalogue: every case is one row of CASES, and one test checks them all the
same way: exit code 2, a single line on stderr with no traceback and no warning, and the
files around it unchanged. The CLI runs in-process; no case gets as far as starting Ray."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shlex
import time
import zipfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from analysis.collect import collect, read_sweep
from medvit.yamlio import dump_yaml, load_yaml
from medsweep.cli import build_parser, main
from sweep_helpers import retina_spec
from test_cli_grammar import subcommands

TRIAL = "train_medvit_ab12c_00000_0_alpha=0.1000"
LINES = [
    {"epoch": e, "training_iteration": e, "train_loss": 1.0, "val_acc": 0.5 + e / 100, "val_loss": 1.0,
     "best_epoch": e, "selected_val_acc": 0.5 + e / 100, "select_score": 0.5, "diverged": False,
     "trial_id": "ab12c_00000", "done": e == 2}
    for e in (1, 2)
]
# A tiny read-only place that exists on every Linux machine, root included.
READ_ONLY = "/sys/medsweep-test"
NO_GPU = not torch.cuda.is_available()


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def write_sweep(folder: Path, spec_text: str | None, state: str | None = "ok", tuner: bool = True,
                result_text: str | None = None) -> Path:
    """A sweep folder in Ray's layout, written by hand: spec, experiment state, one trial."""
    trial = folder / TRIAL
    (trial / "checkpoint_000001").mkdir(parents=True)
    (trial / "checkpoint_000001" / "state.pt").write_bytes(b"not a torch file")
    (trial / "params.json").write_text(json.dumps({"alpha": 0.1}))
    (trial / "result.json").write_text(result_text or "".join(json.dumps(r) + "\n" for r in LINES))
    if spec_text is not None:
        (folder / "medsweep_spec.yaml").write_text(spec_text)
    meta = {"trial_id": "ab12c_00000", "status": "TERMINATED", "relative_logdir": TRIAL, "config": {"alpha": 0.1}}
    text = json.dumps({"trial_data": [[json.dumps(meta), json.dumps({"last_result": LINES[-1]})]],
                       "runner_data": {"_metric": "val_acc"}})
    if state is not None:
        (folder / "experiment_state-2025-01-01_00-00-00.json").write_text(text if state == "ok" else state)
    if tuner:
        (folder / "tuner.pkl").write_bytes(b"never unpickled by these cases")
    return folder


def write_checkpoint(folder: Path, content) -> None:
    folder.mkdir(parents=True)
    path = folder / "state.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)


@pytest.fixture(scope="module")
def world(tmp_path_factory, real_root) -> dict[str, str]:
    """Every path a case names, in one folder whose content is compared before and after."""
    root = tmp_path_factory.mktemp("bad_inputs")
    spec_text = retina_spec(root, "sweep").to_yaml()
    paths = {"root": root, "missing": root / "missing", "file": root / "afile.txt", "empty": root / "empty",
             "cwd": root / "cwd"}
    paths["file"].write_text("a file, not a folder\n")
    for name in ("empty", "cwd"):
        paths[name].mkdir()
    paths["sweep"] = write_sweep(root / "sweep", spec_text)
    paths["trial"] = paths["sweep"] / TRIAL
    paths["spec_only"] = root / "spec_only"
    paths["spec_only"].mkdir()
    (paths["spec_only"] / "medsweep_spec.yaml").write_text(spec_text)
    paths["nospec"] = write_sweep(root / "nospec", None)
    paths["notuner"] = write_sweep(root / "notuner", spec_text, tuner=False)
    paths["badspec"] = write_sweep(root / "badspec", "name: [unclosed\n")
    paths["corrupt_state"] = write_sweep(root / "corrupt_state", spec_text, state='{"trial_data": [[')
    paths["hollow_state"] = write_sweep(root / "hollow_state", spec_text, state='{"stats": {}}')
    middle = "".join(json.dumps(r) + "\n" for r in LINES[:1]) + "#garbage#\n" + json.dumps(LINES[1]) + "\n"
    paths["corrupt_result"] = write_sweep(root / "corrupt_result", spec_text, result_text=middle)
    paths["spec_folder"] = write_sweep(root / "spec_folder", None)
    (paths["spec_folder"] / "medsweep_spec.yaml").mkdir()
    paths["state_folder"] = write_sweep(root / "state_folder", spec_text)
    (paths["state_folder"] / "experiment_state-2099-01-01_00-00-00.json").mkdir()  # the newest by name
    paths["no_trial_id"] = root / "no_trial_id"
    write_checkpoint(paths["no_trial_id"] / "trial" / "checkpoint_000001",
                     {"best_val_scores": torch.zeros(3), "config": {}})
    (paths["no_trial_id"] / "trial" / "result.json").write_text("")
    paths["results"] = root / "results.parquet"
    results = collect(paths["sweep"], paths["results"])
    paths["results_empty"] = root / "results_empty.parquet"
    pq.write_table(results.slice(0, 0), paths["results_empty"])
    paths["results_unranked"] = root / "results_unranked.parquet"
    pq.write_table(results.set_column(results.schema.get_field_index("best_value"), "best_value",
                                      pa.nulls(results.num_rows, pa.float64())), paths["results_unranked"])

    (root / "run").mkdir()
    (root / "run" / "metrics.json").write_text("{}")
    paths["run"] = root / "run"
    for name, content in {"ckpt_empty": b"", "ckpt_garbage": b"garbage" * 50, "ckpt_tensor": torch.zeros(2),
                          "ckpt_evil": {"x": Evil()}}.items():
        write_checkpoint(root / name, content)
        paths[name] = root / name
    good = root / "ckpt_trunc"
    write_checkpoint(good, {"model": torch.zeros(100)})
    (good / "state.pt").write_bytes((good / "state.pt").read_bytes()[:200])
    paths["ckpt_trunc"] = good
    write_checkpoint(root / "ckpt_rawpickle", pickle.dumps(Evil()))
    paths["ckpt_rawpickle"] = root / "ckpt_rawpickle"

    for name, text in {
        "config_dup": "dataset: retinamnist\nlr: 0.001\nlr: 0.01\n",
        "config_list": "- dataset\n- retinamnist\n",
        "config_yaml": "dataset: [retinamnist\n",
        "config_field": "dataset: retinamnist\nlearning_rate: 0.1\n",
        "config_inf": "dataset: retinamnist\nlr: .inf\n",
        "spec_yaml": "name: x\ndataset: [\n",
        "spec_inf": re.sub(r"\n  lr: .*\n", "\n  lr: {choice: [1.0e-3, .inf]}\n", spec_text),
        "spec_field": spec_text + "surprise: 1\n",
        "spec_nouser": re.sub(r"\nstorage: .*\n", "\nstorage: ~nosuchuser/results\n", spec_text),
    }.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(text)
    for name, text in {
        "config_bool_epochs": "dataset: retinamnist\nepochs: true\n",
        "config_seed_2_64": f"dataset: retinamnist\nseed: {2**64}\n",
        "config_merge_key": "base: &base {lr: 0.001, epochs: 2}\n<<: *base\ndataset: retinamnist\n",
        "config_deep": "dataset: " + "[" * 1500 + "]" * 1500 + "\n",
    }.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(text)
    spec = load_yaml(spec_text, "spec")
    for name, changes in {"spec_gpu_inf": {"resources": {"cpu": 1, "gpu": float("inf")}},
                          "spec_cpu_nan": {"resources": {"cpu": float("nan"), "gpu": 0}},
                          "spec_deep_when": {"search": {**spec["search"], "margin": {
                              **spec["search"]["margin"], "when": "not " * 1500 + "alpha > 0"}}}}.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(dump_yaml({**spec, **changes}))
    paths["latin1"] = root / "latin1.yaml"
    paths["latin1"].write_bytes("dataset: retinamnist\n# réglage\n".encode("latin-1"))
    paths["fifo"] = root / "fifo.yaml"
    os.mkfifo(paths["fifo"])  # opening it for reading would block until a writer comes
    fifo = {"scheduler": {"type": "fifo"}}
    for name, changes in {"spec_repeats_asha": {"repeats": 2}, "spec_repeats_odd": {"repeats": 2, "num_samples": 3, **fifo},
                          "spec_repeats_many": {"repeats": 11, **fifo}}.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(dump_yaml({**load_yaml(spec_text, name), **changes}))

    real = np.load(real_root / "retinamnist.npz")
    first_label = np.arange(len(real["train_labels"]))[:, None] == 0
    for name, labels in {"npz_empty_train": real["train_labels"][:0], "npz_labels_nan": np.where(first_label, np.nan, 1.0),
                         "npz_labels_str": real["train_labels"].astype(str),
                         "npz_labels_fraction": np.where(first_label, 0.5, 1.0)}.items():
        paths[name] = root / name
        paths[name].mkdir()
        data = {key: real[key] for key in real.files}
        data["train_labels"] = labels
        if name == "npz_empty_train":
            data["train_images"] = data["train_images"][:0]
        np.savez(paths[name] / "retinamnist.npz", **data)
    paths["npz_garbage"] = root / "npz_garbage"
    paths["npz_garbage"].mkdir()
    (paths["npz_garbage"] / "retinamnist.npz").write_bytes(b"PK\x03\x04 truncated")
    paths["npz_text_zip"] = root / "npz_text_zip"
    paths["npz_text_zip"].mkdir()
    with zipfile.ZipFile(paths["npz_text_zip"] / "retinamnist.npz", "w") as archive:
        for key in real.files:
            archive.writestr(f"{key}.npy", "not an array\n")
    paths["report_in_out"] = root / "report_in_out"
    paths["report_in_out"].mkdir()
    (paths["report_in_out"] / "table1.csv").write_bytes(paths["results"].read_bytes())
    paths["long_name"] = root / ("x" * 300)
    paths["loop"] = root / "loop"
    paths["loop"].symlink_to(root / "loop")
    paths["dangling"] = root / "dangling"
    paths["dangling"].symlink_to(root / "nowhere" / "run")
    paths["dangling_parquet"] = root / "dangling.parquet"
    paths["dangling_parquet"].symlink_to(root / "nowhere" / "c.parquet")
    paths["results_link"] = root / "results_link.parquet"
    paths["results_link"].symlink_to(paths["results"])
    return {key: str(value) for key, value in paths.items()}


# (id, command line with {placeholders} from `world`)
CASES = [
    # medsweep itself
    ("no-command", ""),
    ("unknown-command", "fly"),
    # train: flags
    ("train-no-out", "train --dataset retinamnist"),
    ("train-no-dataset", "train --out {cwd}/r"),
    ("train-unknown-flag", "train --dataset retinamnist --out {cwd}/r --speed 3"),
    ("train-dataset", "train --dataset nosuchmnist --out {cwd}/r"),
    ("train-model", "train --dataset retinamnist --model vit_huge --out {cwd}/r"),
    ("train-alpha-high", "train --dataset retinamnist --alpha 2 --out {cwd}/r"),
    ("train-alpha-neg", "train --dataset retinamnist --alpha -0.1 --out {cwd}/r"),
    ("train-alpha-binary", "train --dataset pneumoniamnist --alpha 0.2 --out {cwd}/r"),
    ("train-margin", "train --dataset retinamnist --margin -1 --out {cwd}/r"),
    ("train-epochs-zero", "train --dataset retinamnist --epochs 0 --out {cwd}/r"),
    ("train-epochs-float", "train --dataset retinamnist --epochs 1.5 --out {cwd}/r"),
    ("train-batch", "train --dataset retinamnist --batch-size 0 --out {cwd}/r"),
    ("train-lr-zero", "train --dataset retinamnist --lr 0 --out {cwd}/r"),
    ("train-lr-inf", "train --dataset retinamnist --lr inf --out {cwd}/r"),
    ("train-lr-nan", "train --dataset retinamnist --lr nan --out {cwd}/r"),
    ("train-lr-text", "train --dataset retinamnist --lr fast --out {cwd}/r"),
    ("train-wd-inf", "train --dataset retinamnist --weight-decay inf --out {cwd}/r"),
    ("train-wd-neg", "train --dataset retinamnist --weight-decay -0.1 --out {cwd}/r"),
    ("train-margin-inf", "train --dataset retinamnist --margin inf --out {cwd}/r"),
    ("train-augment", "train --dataset retinamnist --augment wild --out {cwd}/r"),
    ("train-img-size", "train --dataset retinamnist --img-size 32 --out {cwd}/r"),
    ("train-seed", "train --dataset retinamnist --seed -1 --out {cwd}/r"),
    ("train-select-metric", "train --dataset retinamnist --select-metric val_f1 --out {cwd}/r"),
    ("train-select-ordinal-only", "train --dataset pneumoniamnist --select-metric val_qwk --out {cwd}/r"),
    ("train-subset", "train --dataset retinamnist --subset 0 --out {cwd}/r"),
    ("train-device", "train --dataset retinamnist --device tpu --out {cwd}/r"),
    ("train-device-cuda", "train --dataset retinamnist --device cuda --out {cwd}/r"),
    # train: files
    ("train-config-missing", "train --config {missing}.yaml --out {cwd}/r"),
    ("train-config-folder", "train --config {empty} --out {cwd}/r"),
    ("train-config-duplicate-key", "train --config {config_dup} --out {cwd}/r"),
    ("train-config-list", "train --config {config_list} --out {cwd}/r"),
    ("train-config-yaml", "train --config {config_yaml} --out {cwd}/r"),
    ("train-config-field", "train --config {config_field} --out {cwd}/r"),
    ("train-config-inf", "train --config {config_inf} --out {cwd}/r"),
    ("train-config-fifo", "train --config {fifo} --out {cwd}/r"),
    ("train-config-bool-epochs", "train --config {config_bool_epochs} --out {cwd}/r"),
    ("train-config-seed-2-64", "train --config {config_seed_2_64} --out {cwd}/r"),
    ("train-seed-2-64", f"train --dataset retinamnist --seed {2**64} --out {{cwd}}/r"),
    ("train-config-merge-key", "train --config {config_merge_key} --out {cwd}/r"),
    ("train-config-nested-deep", "train --config {config_deep} --out {cwd}/r"),
    ("train-out-symlink-loop", "train --dataset retinamnist --out {loop}"),
    ("train-out-dangling-symlink", "train --dataset retinamnist --out {dangling}"),
    ("train-out-name-too-long", "train --dataset retinamnist --out {long_name}"),
    ("train-data-labels-nan", "train --dataset retinamnist --data-root {npz_labels_nan} --out {cwd}/r"),
    ("train-data-labels-string", "train --dataset retinamnist --data-root {npz_labels_str} --out {cwd}/r"),
    ("train-data-labels-fraction", "train --dataset retinamnist --data-root {npz_labels_fraction} --out {cwd}/r"),
    ("train-data-zip-of-text", "train --dataset retinamnist --data-root {npz_text_zip} --out {cwd}/r"),
    ("train-config-not-utf8", "train --config {latin1} --out {cwd}/r"),
    ("train-data-root-nouser", "train --dataset retinamnist --data-root ~nosuchuser/data --out {cwd}/r"),
    ("train-medmnist-root-empty", "train --dataset retinamnist --out {cwd}/r"),
    ("train-medmnist-root-nouser", "train --dataset retinamnist --out {cwd}/r"),
    ("train-out-file", "train --dataset retinamnist --out {file}"),
    ("train-out-under-file", "train --dataset retinamnist --out {file}/run"),
    ("train-out-holds-run", "train --dataset retinamnist --out {run}"),
    ("train-out-trial-folder", "train --dataset retinamnist --out {trial}"),
    ("train-out-read-only", f"train --dataset retinamnist --out {READ_ONLY}/run"),
    ("train-data-missing", "train --dataset retinamnist --data-root {empty} --out {cwd}/r"),
    ("train-data-garbage", "train --dataset retinamnist --data-root {npz_garbage} --out {cwd}/r"),
    ("train-data-empty-split", "train --dataset retinamnist --data-root {npz_empty_train} --out {cwd}/r"),
    # data download (each fails before any network access)
    ("data-no-verb", "data"),
    ("data-no-dataset", "data download"),
    ("data-dataset", "data download --dataset nosuchmnist --data-root {cwd}"),
    ("data-size", "data download --dataset retinamnist --size 32 --data-root {cwd}"),
    ("data-root-file", "data download --dataset retinamnist --data-root {file}"),
    ("data-root-read-only", f"data download --dataset retinamnist --data-root {READ_ONLY}"),
    ("data-root-nouser", "data download --dataset retinamnist --data-root ~nosuchuser/data"),
    ("data-deprecated-root-file", "data download --dataset retinamnist --root {file}"),
    ("data-root-and-deprecated-root", "data download --dataset retinamnist --root {cwd} --data-root {cwd}"),
    # sweep
    ("sweep-spec-missing", "sweep nosuchspec"),
    ("sweep-spec-folder", "sweep {empty}"),
    ("sweep-spec-yaml", "sweep {spec_yaml}"),
    ("sweep-spec-inf", "sweep {spec_inf}"),
    ("sweep-spec-field", "sweep {spec_field}"),
    ("sweep-spec-fifo", "sweep {fifo}"),
    ("sweep-spec-gpu-inf", "sweep {spec_gpu_inf}"),
    ("sweep-spec-cpu-nan", "sweep {spec_cpu_nan}"),
    ("sweep-spec-when-nested-deep", "sweep {spec_deep_when}"),
    ("sweep-storage-symlink-loop", "sweep retinamnist --smoke --storage {loop}"),
    ("sweep-storage-name-too-long", "sweep retinamnist --smoke --storage {long_name}"),
    ("sweep-spec-not-utf8", "sweep {latin1}"),
    ("sweep-spec-nouser", "sweep ~nosuchuser/spec.yaml"),
    ("sweep-spec-storage-nouser", "sweep {spec_nouser}"),
    ("sweep-storage-nouser", "sweep retinamnist --smoke --storage ~nosuchuser/results"),
    ("sweep-storage-hdfs-no-jvm", "sweep retinamnist --smoke --storage hdfs://namenode/results"),
    ("sweep-storage-file-uri-proc", "sweep retinamnist --smoke --storage file:///proc/medsweep"),
    ("sweep-data-root-nouser", "sweep retinamnist --smoke --storage {cwd} --data-root ~nosuchuser/data"),
    ("sweep-num-samples", "sweep retinamnist --num-samples 0"),
    ("sweep-num-samples-huge", "sweep retinamnist --smoke --num-samples 100000000000000000000000"),
    ("sweep-repeats-asha", "sweep {spec_repeats_asha}"),
    ("sweep-repeats-num-samples", "sweep {spec_repeats_odd}"),
    ("sweep-repeats-too-many", "sweep {spec_repeats_many}"),
    ("sweep-name", "sweep retinamnist --name ../escape"),
    ("sweep-storage-file", "sweep retinamnist --smoke --storage {file}"),
    ("sweep-storage-under-file", "sweep retinamnist --smoke --storage {file}/deeper"),
    ("sweep-storage-read-only", f"sweep retinamnist --smoke --storage {READ_ONLY}"),
    ("sweep-existing-sweep", "sweep {sweep}/medsweep_spec.yaml"),
    ("sweep-address-unreachable", "sweep retinamnist --smoke --storage {cwd} --address 127.0.0.1:1"),
    ("sweep-address-malformed", "sweep retinamnist --smoke --storage {cwd} --address nowhere"),
    ("sweep-data-missing", "sweep retinamnist --smoke --storage {cwd} --data-root {empty}"),
    # resume
    ("resume-missing", "resume {missing}"),
    ("resume-empty", "resume {empty}"),
    ("resume-file", "resume {file}"),
    ("resume-spec-no-state", "resume {spec_only}"),
    ("resume-no-spec", "resume {nospec}"),
    ("resume-bad-spec", "resume {badspec}"),
    ("resume-no-tuner", "resume {notuner}"),
    ("resume-corrupt-state", "resume {corrupt_state}"),
    ("resume-hollow-state", "resume {hollow_state}"),
    ("resume-storage-parent", "resume {root}"),
    ("resume-trial-folder", "resume {trial}"),
    ("resume-address-unreachable", "resume {sweep} --address 127.0.0.1:1"),
    ("resume-nouser", "resume ~nosuchuser/sweep"),
    ("resume-spec-is-folder", "resume {spec_folder}"),
    ("resume-state-is-folder", "resume {state_folder}"),
    # status
    ("status-missing", "status {missing}"),
    ("status-empty", "status {empty}"),
    ("status-file", "status {file}"),
    ("status-trial-folder", "status {trial}"),
    ("status-storage-parent", "status {root}"),
    ("status-corrupt-state", "status {corrupt_state}"),
    ("status-corrupt-result", "status {corrupt_result}"),
    ("status-nouser", "status ~nosuchuser/sweep"),
    ("status-spec-is-folder", "status {spec_folder}"),
    ("status-state-is-folder", "status {state_folder}"),
    # collect
    ("collect-missing", "collect {missing} --out {cwd}/r.parquet"),
    ("collect-empty", "collect {empty} --out {cwd}/r.parquet"),
    ("collect-corrupt-state", "collect {corrupt_state} --out {cwd}/r.parquet"),
    ("collect-corrupt-result", "collect {corrupt_result} --out {cwd}/r.parquet"),
    ("collect-out-not-parquet", "collect {sweep} --out {file}"),
    ("collect-out-folder", "collect {sweep} --out {empty}"),
    ("collect-device", "collect {sweep} --out {cwd}/r.parquet --evaluate-test --device tpu"),
    ("collect-out-under-file", "collect {sweep} --out {file}/r.parquet"),
    ("collect-spec-is-folder", "collect {spec_folder} --out {cwd}/r.parquet"),
    ("collect-state-is-folder", "collect {state_folder} --out {cwd}/r.parquet"),
    # evaluate
    ("evaluate-missing", "evaluate {missing}.parquet --out {cwd}/e.parquet"),
    ("evaluate-not-parquet", "evaluate {file} --out {cwd}/e.parquet"),
    ("evaluate-corrupt-checkpoint", "evaluate {results} --out {cwd}/e.parquet"),
    ("evaluate-device-cuda", "evaluate {results} --device cuda --out {cwd}/e.parquet"),
    ("evaluate-empty-table", "evaluate {results_empty} --out {cwd}/e.parquet"),
    ("evaluate-nothing-ranked", "evaluate {results_unranked} --out {cwd}/e.parquet"),
    ("evaluate-no-out", "evaluate {results}"),
    ("evaluate-out-is-its-input", "evaluate {results} --out {results}"),
    ("evaluate-out-link-to-its-input", "evaluate {results} --out {results_link}"),
    ("evaluate-out-not-parquet", "evaluate {results} --out {file}"),
    ("evaluate-out-suffix", "evaluate {results} --out {cwd}/e.csv"),
    ("evaluate-out-folder", "evaluate {results} --out {empty}"),
    # ensemble
    ("ensemble-missing", "ensemble {missing} --out {cwd}/e"),
    ("ensemble-file", "ensemble {file} --out {cwd}/e"),
    ("ensemble-rounds-negative", "ensemble {sweep} --rounds -1 --out {cwd}/e"),
    ("ensemble-rounds-huge", "ensemble {sweep} --rounds 1000000000 --out {cwd}/e"),
    ("ensemble-out-under-file", "ensemble {sweep} --out {file}/e"),
    ("ensemble-corrupt-checkpoint", "ensemble {sweep} --out {cwd}/e"),
    ("ensemble-no-trial-id", "ensemble {no_trial_id} --out {cwd}/e"),
    ("ensemble-out-file", "ensemble {sweep} --out {file}"),
    ("ensemble-out-symlink-loop", "ensemble {sweep} --out {loop}"),
    ("ensemble-device", "ensemble {sweep} --device tpu --out {cwd}/e"),
    ("ensemble-device-cuda", "ensemble {sweep} --device cuda --out {cwd}/e"),
    # confirm
    ("confirm-missing", "confirm {missing} --out {cwd}/c.parquet"),
    ("confirm-seeds", "confirm {sweep} --seeds 0 --out {cwd}/c.parquet"),
    ("confirm-seeds-huge", "confirm {sweep} --seeds 1000000 --out {cwd}/c.parquet"),
    ("confirm-epochs", "confirm {sweep} --epochs 0 --out {cwd}/c.parquet"),
    ("confirm-out-under-file", "confirm {sweep} --out {file}/c.parquet"),
    ("confirm-device-cuda", "confirm {sweep} --device cuda --out {cwd}/c.parquet"),
    ("confirm-out-suffix", "confirm {sweep} --out {cwd}/c.csv"),
    ("confirm-out-dangling-symlink", "confirm {sweep} --out {dangling_parquet}"),
    # report
    ("report-missing", "report {missing}.parquet --out {cwd}/rep"),
    ("report-out-overwrites-input", "report {report_in_out}/table1.csv --out {report_in_out}"),
    ("report-out-file", "report {results} --out {file}"),
    ("report-out-under-file", "report {results} --out {file}/rep"),
    ("report-gradcam-half", "report {results} --out {cwd}/rep --gradcam-ce {ckpt_garbage}"),
    ("report-gradcam-corrupt", "report {results} --out {cwd}/rep --gradcam-ce {ckpt_garbage} --gradcam-ordinal {ckpt_empty}"),
    ("report-gradcam-images", "report {results} --out {cwd}/rep --gradcam-images 0"),
    ("report-device", "report {results} --out {cwd}/rep --device tpu"),
    ("report-device-cuda", "report {results} --out {cwd}/rep --device cuda"),
    # gradcam
    ("gradcam-state-empty", "gradcam --checkpoint {ckpt_empty} --images 2 --out {cwd}/cam.png"),
    ("gradcam-state-garbage", "gradcam --checkpoint {ckpt_garbage} --images 2 --out {cwd}/cam.png"),
    ("gradcam-state-truncated", "gradcam --checkpoint {ckpt_trunc} --images 2 --out {cwd}/cam.png"),
    ("gradcam-state-malicious", "gradcam --checkpoint {ckpt_evil} --images 2 --out {cwd}/cam.png"),
    ("gradcam-state-raw-pickle", "gradcam --checkpoint {ckpt_rawpickle} --images 2 --out {cwd}/cam.png"),
    ("gradcam-state-foreign", "gradcam --checkpoint {ckpt_tensor} --images 2 --out {cwd}/cam.png"),
    ("gradcam-checkpoint-missing", "gradcam --checkpoint {missing} --images 2 --out {cwd}/cam.png"),
    ("gradcam-checkpoint-no-state", "gradcam --checkpoint {empty} --images 2 --out {cwd}/cam.png"),
    ("gradcam-images", "gradcam --checkpoint {ckpt_garbage} --images 0 --out {cwd}/cam.png"),
    ("gradcam-out-folder", "gradcam --checkpoint {ckpt_garbage} --images 2 --out {empty}"),
    ("gradcam-out-under-file", "gradcam --checkpoint {ckpt_garbage} --images 2 --out {file}/cam.png"),
    ("gradcam-out-suffix", "gradcam --checkpoint {ckpt_garbage} --out {cwd}/cam.jpg"),
    ("gradcam-out-name-too-long", "gradcam --checkpoint {ckpt_garbage} --out {long_name}.png"),
    ("gradcam-device", "gradcam --checkpoint {ckpt_garbage} --device tpu --out {cwd}/cam.png"),
    ("gradcam-device-cuda", "gradcam --checkpoint {ckpt_garbage} --device cuda --out {cwd}/cam.png"),
]
# Environment variables a case sets (the CLI reads MEDMNIST_ROOT when no --data-root is given).
ENV = {"train-medmnist-root-empty": {"MEDMNIST_ROOT": ""}, "train-medmnist-root-nouser": {"MEDMNIST_ROOT": "~nosuchuser/data"}}
NEEDS_NO_GPU = {f"{command}-device-cuda" for command in ("train", "evaluate", "ensemble", "confirm", "report", "gradcam")}
# One-line warnings before the error, by design: a MedMNIST file that is not the official one, and
# data download's deprecated --root.
WARNS = {**{name: ("MD5 mismatch",) for name in ("train-data-garbage", "train-data-empty-split", "train-data-labels-nan",
                                                 "train-data-labels-string", "train-data-labels-fraction",
                                                 "train-data-zip-of-text")},
         "data-deprecated-root-file": ("data download: --root is deprecated; use --data-root",)}


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("argv", "warns", "env"), [
    pytest.param(argv, WARNS.get(name, ()), ENV.get(name, {}), id=name,
                 marks=pytest.mark.skipif(name in NEEDS_NO_GPU and not NO_GPU, reason="a GPU is here"))
    for name, argv in CASES
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, warns, env, world, capsys, monkeypatch):
    root = Path(world["root"])
    monkeypatch.chdir(world["cwd"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = snapshot(root)
    capsys.readouterr()
    with warnings.catch_warnings():
        python_default_warning_filters()
        code = main(shlex.split(argv.format(**world)))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert [line.split(":", 2)[:2] for line in lines] == [*[["medsweep", " warning"]] * len(warns), ["medsweep", " error"]], err
    assert all(text in line for text, line in zip(warns, lines))
    assert "Traceback" not in err
    assert snapshot(root) == before


def python_default_warning_filters() -> None:
    """The filters `python -m medsweep` runs with, not pytest's: what a user would see."""
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)


def test_the_catalogue_covers_every_subcommand():
    """Every leaf of the parser ("train", "data download", ...) has cases, ensemble included."""
    leaves = set(subcommands(build_parser()))
    uncovered = {leaf for leaf in leaves if not any(f"{argv} ".startswith(f"{leaf} ") for _, argv in CASES)}
    assert len(leaves) == 11 and not uncovered, uncovered
    assert len(CASES) >= 60 and len({name for name, _ in CASES}) == len(CASES)


def test_an_unreachable_address_fails_within_seconds(world, capsys):
    start = time.monotonic()
    assert main(["sweep", "retinamnist", "--smoke", "--storage", world["cwd"], "--address", "127.0.0.1:1"]) == 2
    assert time.monotonic() - start < 10
    assert "127.0.0.1:1" in capsys.readouterr().err


def test_a_result_line_with_infinity_is_read_not_a_traceback(tmp_path, capsys):
    """Python's json reads `Infinity`; an epoch count of infinity is no count (it overflowed int())."""
    lines = [{**line, "epoch": float("inf"), "training_iteration": float("inf")} if line["epoch"] == 2 else line
             for line in LINES]
    sweep = write_sweep(tmp_path / "inf", retina_spec(tmp_path, "inf").to_yaml(),
                        result_text="".join(json.dumps(line) + "\n" for line in lines))
    assert "Infinity" in (sweep / TRIAL / "result.json").read_text()
    assert main(["status", str(sweep)]) == 0
    assert main(["collect", str(sweep), "--out", str(tmp_path / "r.parquet")]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_results_table_reached_through_a_link_is_updated_not_replaced(world, tmp_path):
    """The table is rewritten where it lives; the link stays a link (evaluate and collect write it)."""
    from analysis.collect import _write_atomic, read_results

    real = tmp_path / "real.parquet"
    real.write_bytes(Path(world["results"]).read_bytes())
    link = tmp_path / "link.parquet"
    link.symlink_to(real)
    table = read_results(link)
    _write_atomic(table.slice(0, 0), link)
    assert link.is_symlink() and read_results(real).num_rows == 0


def test_a_divergence_only_ray_state_recorded_is_never_ranked(tmp_path):
    """result.json lost its last line (the diverged epoch); the experiment state kept it."""
    diverged = {**LINES[-1], "diverged": True, "select_score": -1.0, "train_loss": float("nan")}
    sweep = write_sweep(tmp_path / "lost", retina_spec(tmp_path, "lost").to_yaml(),
                        result_text=json.dumps(LINES[0]) + "\n")
    state = next(sweep.glob("experiment_state-*.json"))
    data = json.loads(state.read_text())
    data["trial_data"][0][1] = json.dumps({"last_result": diverged})
    state.write_text(json.dumps(data))
    row = read_sweep(sweep).to_pandas().iloc[0]
    assert row["stop_reason"] == "diverged" and row["best_value"] != row["best_value"]  # null: never ranked
