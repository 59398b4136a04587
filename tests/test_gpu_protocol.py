"""studies/protocol/gpu_protocol.sh, the MedViT paper's protocol on one GPU: its CPU quick mode
(the same code path) end to end and resumed, the plan's arithmetic, and bad arguments."""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from carry_helpers import without_ray_wheels
from studies.protocol import protocol
from studies.recipe import summarize
from studies.recipe.records import read_records

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "studies/protocol/gpu_protocol.sh"


def study(out: Path, real_root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = without_ray_wheels(out.parent / f"{out.name}-site")  # as carried by device_carry protocol
    return subprocess.run(["bash", SCRIPT, "--device", "cpu", "--quick", "--jobs", "1", "--budget-s", "3600",
                           "--data-root", str(real_root), "--out", str(out),
                           "--bundle", str(out.parent / "bundle.tgz"), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=1200, env=env)


@pytest.mark.slow  # six small trainings of the 224 px models (at 32 px) and a second, resuming call
@pytest.mark.timeout(1500)  # 11 minutes on the shared 2-core CPU at load 12-19; a few idle
def test_quick_study_runs_every_planned_run_and_resumes(tmp_path, real_root):
    run = study(tmp_path, real_root)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["model"] == "medvit_base" and plan["left_out"] == []
    assert "plan: medvit_base (the paper's MedViT-S), 6 of 6 runs" in run.stdout
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").glob("*.jsonl"))]
    arms = ["pneumoniamnist", "retinamnist-a0", "retinamnist-a0.2"]
    assert sorted((r["arm"], r["seed"]) for r in records) == [(arm, seed) for arm in arms for seed in (0, 1)]
    for record in records:
        config = record["config"]
        assert (config["model"], config["resize"], config["audit_test"], config["ema"]) == ("medvit_base", 32, True, 0.0)
        assert config["alpha"] == (0.2 if record["arm"] == "retinamnist-a0.2" else 0.0)
        assert len(record["epochs"]) == 2 and all("test_acc" in epoch for epoch in record["epochs"])
        assert all(epoch["test_rule_acc"] >= epoch["test_acc"] for epoch in record["epochs"])  # summarize's "both"
        assert record["result"]["audit"]["test_selected"]["acc"] >= record["result"]["test"]["acc"]
        rule = record["result"]["audit"]["decision_on_test"]  # a threshold on PneumoniaMNIST, class offsets on RetinaMNIST
        assert ("threshold" in rule, "offsets" in rule) == ((True, False) if record["arm"] == "pneumoniamnist" else (False, True))
    summary = (tmp_path / "summary.md").read_text()
    environment = records[0]["environment"]  # runs pair only within one environment: each says where it ran
    assert environment["threads"] == 1 and all(r["environment"] == environment for r in records)
    assert f"Where the runs ran: {environment['device']}, torch {environment['torch']} (6 runs)." in summary
    assert "| retinamnist-a0.2 | medvit_base | 2 |" in summary and "seed paper 0.594" in summary
    for arm in ("pneumoniamnist", "retinamnist-a0"):
        on_test = [r["result"]["audit"]["decision_on_test"]["acc"] for r in records if r["arm"] == arm]
        (line,) = [line for line in summary.splitlines() if line.startswith(f"| {arm} |")]
        assert line.split(" | ")[6] == summarize.fmt(on_test)
    # what a paper spec's sweep trial writes at each checkpoint: the whole Trainer state (medvit_base's
    # 44 M parameters four times: the model, the selected epoch's weights, Adam's two moments)
    checkpoint = plan["checkpoint"]["medvit_base"]
    assert 4 * 44e6 * 4 / 2**20 < checkpoint["checkpoint_mib"] < 4 * 45e6 * 4 / 2**20
    assert checkpoint["checkpoint_save_s"] > 0 and checkpoint["checkpoint_copy_s"] > 0
    assert f"- medvit_base: {checkpoint['checkpoint_mib']:.1f} MiB" in summary
    assert f"plan: medvit_base: a sweep trial's checkpoint: {checkpoint['checkpoint_mib']:.1f} MiB" in run.stdout

    with tarfile.open(tmp_path.parent / "bundle.tgz") as bundle:  # what a device call brings back
        names = bundle.getnames()
    assert sorted(n for n in names if n.endswith(".jsonl")) == sorted(f"./runs/{p.name}" for p in (tmp_path / "runs").glob("*.jsonl"))
    assert "./summary.md" in names and "./plan.json" in names

    again = study(tmp_path, real_root)  # resumes: every step's output is there
    assert again.returncode == 0, again.stderr[-2000:]
    assert "plan: kept" in again.stdout and again.stdout.count("kept ") == 1 + 6

    # another machine, a fresh folder: the records of the first call carried in, no run trained
    # again; gzipped as the committed ones are, but for one as a call's bundle brings it back
    (tmp_path / "runs" / "pneumoniamnist-1.jsonl").unlink()
    carried = tmp_path.parent / "carried"
    carried.mkdir()
    plain, *gzipped = sorted((tmp_path / "runs").glob("*.jsonl"))
    shutil.copy(plain, carried)
    for path in gzipped:
        (carried / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    later = study(tmp_path.parent / "later", real_root, "--records", str(carried))
    assert later.returncode == 0, later.stdout[-2000:] + later.stderr[-2000:]
    assert "plan: kept 5 records of medvit_base" in later.stdout
    assert json.loads((tmp_path.parent / "later" / "plan.json").read_text())["runs"] == [["pneumoniamnist", 1]]
    assert "| pneumoniamnist | medvit_base | 2 |" in (tmp_path.parent / "later" / "summary.md").read_text()


def test_the_summary_puts_both_choices_on_test_beside_the_honest_number():
    def record(arm, acc, epoch_on_test, rule_on_test=None):
        audit = {"test_selected": {"acc": epoch_on_test}} | (
            {"decision_on_test": {"threshold": 0.3, "acc": rule_on_test}} if rule_on_test else {})
        return {"arm": arm, "config": {"model": "medvit_base"}, "result": {"test": {"acc": acc, "auc": 0.9}, "audit": audit}}

    table = protocol.summary_table([record("pneumoniamnist", 0.88, 0.90, 0.94), record("pneumoniamnist", 0.86, 0.91, 0.93),
                                    record("retinamnist-a0", 0.52, 0.55)]).splitlines()  # a record from before the rule's audit
    assert table[0].split(" | ")[5:7] == ["test ACC, epoch chosen on test (audit)", "test ACC, decision rule chosen on test (audit)"]
    pneumonia = next(line for line in table if line.startswith("| pneumoniamnist |")).split(" | ")
    assert pneumonia[3:7] == ["0.870 +- 0.014", "0.900 +- 0.000", "0.905 +- 0.007", "0.935 +- 0.007"]
    assert next(line for line in table if line.startswith("| retinamnist-a0 |")).split(" | ")[5:7] == ["0.550 +- 0.000", "-"]


def test_fit_picks_the_most_runs_then_the_shortest_wall():
    runs = [(label, seed) for seed in (0, 1, 2) for label in protocol.ARMS]
    each = {label: protocol.run_seconds(label, False, 100.0) for label in protocol.ARMS}
    serial = sum(each[label] for label, _ in runs)
    jobs, chosen, wall = protocol.fit(runs, {1: 100.0, 2: 150.0}, budget_s=serial + 1, quick=False)
    assert (jobs, chosen) == (2, runs) and wall < serial  # packed: 75 images/s each, but two at once
    jobs, chosen, wall = protocol.fit(runs, {1: 100.0}, budget_s=each["retinamnist-a0"] * 2.5, quick=False)
    assert chosen == [("retinamnist-a0", 0), ("retinamnist-a0.2", 0)]  # in priority order
    assert wall == pytest.approx(each["retinamnist-a0"] * 2)
    assert protocol.fit(runs, {1: 100.0}, budget_s=1.0, quick=False) is None


def test_checkpoint_cost_times_the_trainers_own_checkpoint(retina_data, tmp_path):
    from medvit.config import build_config
    from medvit.train import Trainer

    trainer = Trainer(build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "epochs": 1}), retina_data)
    cost = protocol.checkpoint_cost(trainer)
    assert cost["checkpoint_mib"] == trainer.save(tmp_path).stat().st_size / 2**20
    assert cost["checkpoint_save_s"] > 0 and cost["checkpoint_copy_s"] > 0


def test_checkpoint_line_states_its_share_of_each_datasets_epoch():
    from medvit.data import dataset_info

    sample = {"checkpoint_mib": 680.46, "checkpoint_save_s": 1.0, "checkpoint_copy_s": 0.5, "images_per_s": 100.0}
    line = protocol.checkpoint_line(sample, quick=False)
    assert line.startswith("680.5 MiB, 1.00 s to save + 0.50 s to copy: ")
    for flag in ("retinamnist", "pneumoniamnist"):
        n = dataset_info(flag).n_samples
        share = 1.5 / ((n["train"] + n["val"] / 3) / 100.0)  # validation at a third of a step, no test
        assert f"{share:.0%} of a {flag} epoch" in line


def plan_args(out: Path, **changes) -> argparse.Namespace:
    return argparse.Namespace(**{"out": str(out), "device": "cuda", "quick": False, "budget_s": 420.0, "jobs": "1,2",
                                 "rate_images": 512, "window_s": 10.0, "data_root": None, "model": None} | changes)


def test_rate_times_its_epochs_only_after_the_start_line(real_root):
    """Packed processes are timed together: each waits, warmed up, for measure's start line.
    Without it each timed its own epoch as soon as its start-up ended, often alone (an H200
    read 2.3x for two packed medvit_base processes, where the runs got 1.06x)."""
    proc = subprocess.Popen([sys.executable, "-m", "studies.protocol.protocol", "rate", "--model", "medvit_base",
                             "--device", "cpu", "--images", "16", "--window-s", "0", "--quick",
                             "--data-root", str(real_root)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    go = time.time()
    out, _ = proc.communicate("go\n", timeout=300)
    sample = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0 and sample["epochs"] == 1 and sample["images_per_s"] > 0
    assert go <= sample["window"][0] < sample["window"][1]


def fake_record(label: str, seed: int, model: str = "medvit_base", **changes) -> dict:
    config = protocol.run_config(label, seed, model, "cuda", False, None, **changes)
    return {"arm": label, "seed": seed, "config": config.model_dump()}


def write_records(out: Path, *records: dict) -> None:
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for record in records:
        (out / "runs" / f"{record['arm']}-{record['seed']}.jsonl").write_text(json.dumps(record) + "\n")


def fast_measure(model, jobs, args, checkpoint):
    sample = {"images_per_s": 20000.0}
    return [sample | ({"checkpoint_mib": 680.5, "checkpoint_save_s": 1.0, "checkpoint_copy_s": 1.0}
                      if checkpoint and i == 0 else {}) for i in range(jobs)]


def test_plan_leaves_out_the_runs_that_have_records(tmp_path, monkeypatch, capsys):
    """An earlier call's records (--records): their runs are done; the rest train their model."""
    write_records(tmp_path, fake_record("retinamnist-a0", 0), fake_record("retinamnist-a0.2", 0, alpha=0.2))
    calls = []
    monkeypatch.setattr(protocol, "measure", lambda model, *a, **k: calls.append(model) or fast_measure(model, *a, **k))
    protocol.plan(plan_args(tmp_path))
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["kept"] == [["retinamnist-a0", 0], ["retinamnist-a0.2", 0]] and len(plan["runs"]) == 7
    assert ["retinamnist-a0", 0] not in plan["runs"] and (tmp_path / "jobs.txt").read_text().count("\n") == 7
    assert set(calls) == {"medvit_base"}
    assert "plan: kept 2 records of medvit_base (retinamnist-a0-0, retinamnist-a0.2-0)" in capsys.readouterr().out


def test_a_plan_whose_runs_all_ended_gives_way_to_one_for_the_rest(tmp_path, monkeypatch, capsys):
    """A second call on the still-warm machine: the first call's plan fitted one run, which ended;
    the next plan takes the runs it left out, with the first plan's measurements."""
    one_run = protocol.run_seconds("retinamnist-a0", False, 20000.0) * 1.5
    monkeypatch.setattr(protocol, "measure", fast_measure)
    protocol.plan(plan_args(tmp_path, budget_s=one_run, jobs="1"))
    assert json.loads((tmp_path / "plan.json").read_text())["runs"] == [["retinamnist-a0", 0]]
    protocol.plan(plan_args(tmp_path, budget_s=one_run, jobs="1"))  # its run has no record yet: kept
    assert "plan: kept" in capsys.readouterr().out

    write_records(tmp_path, fake_record("retinamnist-a0", 0))
    monkeypatch.setattr(protocol, "measure", lambda *args, **kwargs: pytest.fail("measured again"))
    protocol.plan(plan_args(tmp_path, budget_s=one_run, jobs="1"))
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["runs"] == [["retinamnist-a0.2", 0]] and plan["kept"] == [["retinamnist-a0", 0]]
    assert plan["measured"] == {"medvit_base": {"1": 20000.0}}
    assert "have their records; planning the 8 it left out with its measurements" in capsys.readouterr().out


def test_plan_with_every_run_recorded_measures_nothing(tmp_path, monkeypatch, capsys):
    write_records(tmp_path, *[fake_record(label, seed, alpha=protocol.ARMS[label][1])
                              for seed in protocol.SEEDS for label in protocol.ARMS])
    monkeypatch.setattr(protocol, "measure", lambda *args, **kwargs: pytest.fail("measured with nothing to run"))
    protocol.plan(plan_args(tmp_path))
    assert json.loads((tmp_path / "plan.json").read_text())["runs"] == []
    assert (tmp_path / "jobs.txt").read_text() == "" and "plan: every run has its record" in capsys.readouterr().out


def test_a_baseline_model_is_its_own_study_beside_its_published_row(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(protocol, "measure", lambda model, *a, **k: calls.append(model) or fast_measure(model, *a, **k))
    protocol.plan(plan_args(tmp_path, model="resnet18_224"))
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert set(calls) == {"resnet18_224"} and plan["model"] == "resnet18_224"
    assert plan["note"] == "ResNet-18 (224), a baseline under the paper's protocol"
    assert protocol.anchor("pneumoniamnist", "resnet18_224") == "MedMNIST v2, ResNet-18 (224): 0.864"
    assert protocol.anchor("retinamnist-a0", "resnet18_224") == "not in the seed paper's Table 1"
    assert protocol.anchor("retinamnist-a0", "medvit_base") == protocol.ANCHORS["retinamnist-a0"]

    (tmp_path / "medvit").mkdir()
    write_records(tmp_path / "medvit", fake_record("retinamnist-a0", 0))
    with pytest.raises(SystemExit, match="trained medvit_base; this study trains one of resnet18_224"):
        protocol.plan(plan_args(tmp_path / "medvit", model="resnet18_224"))


def test_an_unknown_baseline_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        protocol.main(["plan", "--out", str(tmp_path), "--device", "cpu", "--model", "medvit_tiny"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "protocol.py: --model must be one of resnet18_224, resnet50_224, got 'medvit_tiny'\n"


@pytest.mark.slow  # ResNet-18 at 224 px on a CPU, 2 epochs of 16 images
def test_a_baseline_run_trains_the_planned_model(tmp_path, monkeypatch, real_root):
    monkeypatch.setattr(protocol, "measure", fast_measure)
    protocol.plan(plan_args(tmp_path, device="cpu", quick=True, data_root=str(real_root), model="resnet18_224"))
    (tmp_path / "runs").mkdir()
    protocol.run(argparse.Namespace(out=str(tmp_path), label="pneumoniamnist", seed=0))
    record = json.loads((tmp_path / "runs" / "pneumoniamnist-0.jsonl").read_text())
    assert (record["config"]["model"], len(record["epochs"])) == ("resnet18_224", 2)
    protocol.summary(argparse.Namespace(out=str(tmp_path)))
    assert "| pneumoniamnist | resnet18_224 | 1 |" in (tmp_path / "summary.md").read_text()
    assert "MedMNIST v2, ResNet-18 (224): 0.864" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("changes, message", [
    ({"model": "medvit_large"}, "trained medvit_large; this study trains one of medvit_base, medvit_small"),
    ({"resize": 32}, "trained another study: resize 32 (this call: 224)"),
    ({"alpha": 0.5}, "trained another study: alpha 0.5 (this call: 0.0)"),
])
def test_plan_refuses_records_of_another_study(tmp_path, monkeypatch, changes, message):
    write_records(tmp_path, fake_record("retinamnist-a0", 0, **changes))
    monkeypatch.setattr(protocol, "measure", fast_measure)
    with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)")):
        protocol.plan(plan_args(tmp_path))
    assert not (tmp_path / "plan.json").exists()


def test_the_committed_gpu_records_are_runs_of_the_study_the_next_call_plans():
    """The next device call carries reports/protocol/h200 in with --records and trains only the
    runs missing there. An edit to the paper specs' recipe since those runs would make that call
    refuse them after its start: minutes of a 15-minute device session, found here first."""
    records = list(read_records(sorted((REPO / "reports/protocol/h200").glob("*.jsonl.gz"))))
    assert len(records) >= 6
    for record in records:
        assert protocol.study_difference(record, "cuda", False, None) == [], f"{record['arm']}-{record['seed']}"
    edited = records[0] | {"config": records[0]["config"] | {"lr": 3.0e-4}}
    assert protocol.study_difference(edited, "cuda", False, None) == ["lr 0.0003 (this call: 0.001)"]


def test_a_failed_measurement_is_one_line_and_none(tmp_path, capsys):
    # a real rate process that fails (no data there), as one that runs out of GPU memory would
    args = plan_args(tmp_path, device="cpu", quick=True, data_root=str(tmp_path / "nowhere"))
    assert protocol.measure("medvit_base", 1, args, checkpoint=False) is None
    line = capsys.readouterr().out
    assert line.startswith("plan: medvit_base: 1 packed failed (exit ") and "nowhere" in line and line.count("\n") == 1


def test_a_packing_that_fails_leaves_the_smaller_ones(tmp_path, monkeypatch):
    """The GPU's memory holds one 224 px medvit_base at batch 128 but not two: the plan runs one
    at a time instead of stopping; a model that fails alone is passed over for the next."""
    calls = []

    def fake_measure(model, jobs, args, checkpoint):
        calls.append((model, jobs))
        if model == "medvit_base" and jobs > 1 or model == "medvit_small" and jobs > 2:
            return None
        sample = {"images_per_s": 20000.0}
        return [sample | ({"checkpoint_mib": 680.5, "checkpoint_save_s": 1.0, "checkpoint_copy_s": 1.0}
                          if checkpoint and i == 0 else {}) for i in range(jobs)]

    monkeypatch.setattr(protocol, "measure", fake_measure)
    protocol.plan(plan_args(tmp_path, jobs="2,1,4"))
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert calls == [("medvit_base", 1), ("medvit_base", 2)]  # ascending; 4 never tried after 2 failed
    assert (plan["model"], plan["jobs"], plan["measured"]) == ("medvit_base", 1, {"medvit_base": {"1": 20000.0}})

    def base_fails_alone(model, jobs, args, checkpoint):
        return None if model == "medvit_base" else fake_measure(model, jobs, args, checkpoint)

    (tmp_path / "second").mkdir()
    (tmp_path / "third").mkdir()
    monkeypatch.setattr(protocol, "measure", base_fails_alone)
    protocol.plan(plan_args(tmp_path / "second"))
    assert json.loads((tmp_path / "second" / "plan.json").read_text())["model"] == "medvit_small"
    monkeypatch.setattr(protocol, "measure", lambda *args, **kwargs: None)
    with pytest.raises(SystemExit, match="no model could be measured even alone"):
        protocol.plan(plan_args(tmp_path / "third"))
    assert not (tmp_path / "third" / "plan.json").exists()


def test_makespan_packs_longest_first():
    assert protocol.makespan([3, 3, 2, 2, 2], 2) == 7
    assert protocol.makespan([5, 1, 1], 3) == 5


def test_needs_out():
    run = subprocess.run(["bash", SCRIPT, "--device", "cpu"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.strip() == "gpu_protocol.sh: --out DIR is required"


@pytest.mark.parametrize("args, message", [
    (["--device", "gpu"], "gpu_protocol.sh: --device must be cuda or cpu, got 'gpu'"),
    (["--budget-s", "soon"], "gpu_protocol.sh: --budget-s must be a positive whole number of seconds, got 'soon'"),
    (["--jobs", "1,0"], "gpu_protocol.sh: --jobs must be positive integers separated by commas "
                        "(packings to measure), got '1,0'"),
    (["--epochs", "3"], "gpu_protocol.sh: unknown argument --epochs (see --help)"),
    (["--budget-s"], "gpu_protocol.sh: --budget-s needs a value (see --help)"),
    (["--records", "/nowhere"], "gpu_protocol.sh: --records must be a folder of run records, got '/nowhere'"),
    (["--bundle", "/nowhere/b.tgz"], "gpu_protocol.sh: --bundle's folder does not exist: '/nowhere/b.tgz'"),
])
def test_bad_arguments_are_one_line(tmp_path, real_root, args, message):
    run = subprocess.run(["bash", SCRIPT, "--quick", "--out", str(tmp_path), "--data-root", str(real_root), *args],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.strip() == message
    assert not (tmp_path / "plan.json").exists()


def test_the_script_hands_model_to_the_plan(tmp_path, real_root):
    run = subprocess.run(["bash", SCRIPT, "--quick", "--device", "cpu", "--out", str(tmp_path), "--data-root",
                          str(real_root), "--model", "medvit_tiny"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout.strip() == (
        "protocol.py: --model must be one of resnet18_224, resnet50_224, got 'medvit_tiny'")
    assert not (tmp_path / "plan.json").exists()


def test_a_bundle_inside_the_study_folder_is_refused(tmp_path, real_root):
    # tar would read the bundle it is writing
    run = subprocess.run(["bash", SCRIPT, "--quick", "--device", "cpu", "--out", str(tmp_path), "--data-root",
                          str(real_root), "--bundle", str(tmp_path / "b.tgz")], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == f"gpu_protocol.sh: --bundle must be outside --out, got '{tmp_path / 'b.tgz'}'"
    assert not (tmp_path / "plan.json").exists()
