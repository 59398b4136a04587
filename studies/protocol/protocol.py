"""The MedViT paper's protocol on one GPU: measure, plan, run, summarize.

Driven by studies/protocol/gpu_protocol.sh (results: reports/protocol/README.md), one subcommand
per step (``python -m studies.protocol.protocol``):

    protocol.py plan --out DIR --device cuda|cpu [--quick] [--budget-s 420] [--jobs 1,2]
                     [--window-s 10] [--model resnet18_224]
    protocol.py run --out DIR --label retinamnist-a0.2 --seed 1
    protocol.py summary --out DIR

The recipe of every run is the packaged spec's ``train`` section (sweeps/specs/paper/), so the
study and the sweeps train the same thing: 50 epochs, batch 128, AdamW lr 1e-3, cosine, none
of our extras, the best single epoch on validation, ``audit_test: true``. ``plan`` measures
whole Trainer epochs of the run's own config (``rate``, packed as N processes at once, timed
together), picks the paper's MedViT-S (``medvit_base``) if the runs fit the budget, else
``medvit_small``, else the runs that fit, in order of priority, leaving out the runs that
already have a record (of the same model and recipe), and writes ``plan.json`` and ``jobs.txt``;
``--model`` trains a CNN baseline instead.
A run's record is one line in ``DIR/runs/<label>-<seed>.jsonl`` (run_arm.py's format, so
studies/recipe/summarize.py reads it), written when the run ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from analysis.reference import table1_value
from medvit.config import build_config
from medvit.data import dataset_info
from medvit.provenance import where_they_ran
from medvit.train import AUDIT_PREFIX, Trainer, load_data
from studies import run_main
from studies.recipe.records import read_records, record_line
from studies.recipe.run_arm import finished_record, rule_on_test
from studies.recipe.summarize import fmt
from sweeps.spec import load_spec

REPO = Path(__file__).resolve().parents[2]

# label -> (dataset, alpha), in order of priority within a seed
ARMS = {"retinamnist-a0": ("retinamnist", 0.0), "retinamnist-a0.2": ("retinamnist", 0.2),
        "pneumoniamnist": ("pneumoniamnist", 0.0)}
SEEDS, QUICK_SEEDS = (0, 1, 2), (0, 1)
MODELS = ("medvit_base", "medvit_small")  # the paper's MedViT-S first; MedViT-T if the budget needs it
NOTES = {"medvit_base": "the paper's MedViT-S",
         "medvit_small": "the paper's MedViT-T: MedViT-S does not fit the budget"}
# --model: a baseline under the same protocol, beside MedMNIST v2's row for it (seed paper's Table 1)
BASELINES = {"resnet18_224": "ResNet-18 (224)", "resnet50_224": "ResNet-50 (224)"}
# Test ACC of the papers (val-selected as far as they say): MedViT paper's MedViT-S at 224 from
# 28 px; the seed paper's MedViT (alpha 0 from its Table 2, PneumoniaMNIST from its Table 1).
ANCHORS = {
    "retinamnist-a0": "MedViT paper (MedViT-S) 0.561; seed paper 0.552",
    "retinamnist-a0.2": "seed paper 0.594",
    "pneumoniamnist": "seed paper 0.939; MedViT paper (MedViT-S) 0.961",
}
# --quick: the same code path in CPU minutes: the 224 px models at 32 px on a few images.
QUICK = {"resize": 32, "epochs": 2, "subset": 16, "batch_size": 8}
EVAL_COST = 1 / 3  # a forward pass, as a fraction of a training step per image
START_S = 20  # a run's process start and data loading, on top of its epochs
# what makes two runs one study's: kept records must match this call's runs in these
STUDY_KEYS = ("resize", "epochs", "batch_size", "lr", "weight_decay", "augment", "subset", "alpha")
RATE_EPOCHS = 10_000  # rate stops at its window; the schedule's length does not change a step's cost


def note(model: str) -> str:
    return NOTES[model] if model in NOTES else f"{BASELINES[model]}, a baseline under the paper's protocol"


def anchor(label: str, model: str) -> str:
    """The published test ACC beside an arm: the papers' MedViT, or a baseline's MedMNIST v2 row."""
    if model in MODELS:
        return ANCHORS[label]
    published = table1_value(BASELINES[model], ARMS[label][0], "acc")
    return f"MedMNIST v2, {BASELINES[model]}: {published.printed}" if published else "not in the seed paper's Table 1"


def run_config(label: str, seed: int, model: str, device: str, quick: bool, data_root: str | None, **changes):
    """The TrainConfig of one run: the paper spec's recipe, the arm's alpha, the seed."""
    dataset, alpha = ARMS[label]
    spec = load_spec(f"paper/{dataset}")
    values = spec.trial_values({"model": model, "seed": seed, "device": device, "data_root": data_root,
                                "precision": "bf16" if device == "cuda" else "fp32"})
    if spec.is_ordinal:
        values["alpha"] = alpha
    if device == "cpu":
        torch.set_num_threads(1)  # packed processes share the cores, one each
    return build_config(values | (QUICK if quick else {}) | changes)


def study_difference(record: dict, device: str, quick: bool, data_root: str | None) -> list[str]:
    """How a kept record's run differs from the one this call would train in its place (the
    STUDY_KEYS): empty when the record is one of this study's runs."""
    expected = run_config(record["arm"], record["seed"], record["config"]["model"], device, quick, data_root)
    return [f"{key} {record['config'][key]} (this call: {getattr(expected, key)})" for key in STUDY_KEYS
            if record["config"][key] != getattr(expected, key)]


def rate(args) -> None:
    """Print the training images/s of whole Trainer epochs of a run's config, timed together
    with the other packed processes: after a warm-up epoch it prints ``ready`` and waits for
    a line on stdin (``measure`` sends it once every process is ready), then trains epochs
    for ``--window-s`` and reports their mean rate and the window. Without that start line
    each process timed its own short epoch whenever its start-up ended, often alone: medvit_base
    on an H200 read 2.3x packed 2 (876 and 2,008 images/s), where the runs got 1.06x.
    With ``--checkpoint`` also one checkpoint of a sweep trial of that config (the paper specs'
    trials: the Trainer's state saved, then copied into storage as Ray Tune does), which it
    writes after every epoch, or with ``checkpoint_every`` after some."""
    config = run_config("retinamnist-a0", 0, args.model, args.device, args.quick, args.data_root,
                        epochs=RATE_EPOCHS, subset=args.images, audit_test=False)
    trainer = Trainer(config, load_data(config))
    epochs = trainer.epochs()
    next(epochs)  # warm-up: allocator, cuDNN's algorithm search
    print("ready", flush=True)
    sys.stdin.readline()
    start, rates = time.time(), []
    while not rates or time.time() - start < args.window_s:
        rates.append(next(epochs)["images_per_s"])
    sample = {"images_per_s": float(np.mean(rates)), "epochs": len(rates), "window": [start, time.time()]}
    print(json.dumps(sample | (checkpoint_cost(trainer) if args.checkpoint else {})))


def checkpoint_cost(trainer: Trainer) -> dict[str, float]:
    """Size of the Trainer's checkpoint, seconds to save it and seconds to copy it once."""
    with tempfile.TemporaryDirectory() as saved, tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        path = trainer.save(saved)
        saved_at = time.perf_counter()
        shutil.copytree(saved, storage, dirs_exist_ok=True)
        return {"checkpoint_mib": path.stat().st_size / 2**20, "checkpoint_save_s": saved_at - start,
                "checkpoint_copy_s": time.perf_counter() - saved_at}


def checkpoint_line(sample: dict, quick: bool) -> str:
    """One process's checkpoint figures against the epochs of the study's datasets at its rate."""
    cost = sample["checkpoint_save_s"] + sample["checkpoint_copy_s"]
    shares = ", ".join(f"{cost / epoch_seconds(flag, quick, sample['images_per_s']):.0%} of a {flag} epoch"
                       for flag in dict.fromkeys(dataset for dataset, _ in ARMS.values()))
    return (f"{sample['checkpoint_mib']:.1f} MiB, {sample['checkpoint_save_s']:.2f} s to save + "
            f"{sample['checkpoint_copy_s']:.2f} s to copy: {shares} (validation included, no audit)")


def measure(model: str, jobs: int, args, checkpoint: bool) -> list[dict] | None:
    """What each of `jobs` packed processes measured at once (rate's output): training images/s
    of its own epochs, all timed in one window that starts when every process is ready; with
    ``checkpoint``, the first process also times its checkpoint. None, with the failing
    process's last line printed, when one fails: most likely the GPU's memory, which a 224 px
    MedViT at batch 128 fills by tens of GiB a process."""
    command = [sys.executable, "-m", "studies.protocol.protocol", "rate", "--model", model, "--device", args.device,
               "--images", str(QUICK["subset"] if args.quick else args.rate_images),
               "--window-s", str(0 if args.quick else args.window_s)] + ["--quick"] * args.quick
    if args.data_root:
        command += ["--data-root", args.data_root]
    # stderr to files, not pipes: a process blocked on a full pipe while the others train would
    # not be measured packed
    with contextlib.ExitStack() as stack:
        errors = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(jobs)]
        procs = [subprocess.Popen(command + ["--checkpoint"] * (checkpoint and i == 0), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=errors[i], text=True, cwd=REPO) for i in range(jobs)]
        ready = [proc.stdout.readline().strip() == "ready" for proc in procs]  # each waits for its start line
        for proc in procs:
            if not all(ready):
                proc.kill()
            with contextlib.suppress(BrokenPipeError):  # a process that failed or was stopped
                proc.stdin.write("go\n")
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        outputs = [proc.stdout.read() for proc in procs]  # stderr goes to files: stdout cannot block
        for proc in procs:
            proc.wait()
            proc.stdout.close()
        # the processes that never got ready failed on their own; the others were stopped for them
        failed = ([(proc.returncode, error) for proc, error, ok in zip(procs, errors, ready) if not ok]
                  or [(proc.returncode, error) for proc, error in zip(procs, errors) if proc.returncode])
        if failed:
            code, error = failed[0]
            error.seek(0)
            last = ([line for line in error.read().splitlines() if line.strip()] or ["no error printed"])[-1]
            print(f"plan: {model}: {jobs} packed failed (exit {code}): {last}", flush=True)
            return None
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def split_sizes(dataset: str, quick: bool) -> dict[str, int]:
    n = dataset_info(dataset).n_samples
    return {split: min(count, QUICK["subset"]) for split, count in n.items()} if quick else n


def epoch_seconds(dataset: str, quick: bool, per_process_rate: float, audit: bool = False) -> float:
    """An epoch's estimated seconds: its training images, plus validation (and with the audit
    test) at a forward pass's cost, at one packed process's rate."""
    n = split_sizes(dataset, quick)
    return (n["train"] + EVAL_COST * (n["val"] + (n["test"] if audit else 0))) / per_process_rate


def run_seconds(label: str, quick: bool, per_process_rate: float) -> float:
    """A run's estimated seconds: its epochs with the audit, plus the process start."""
    epochs = QUICK["epochs"] if quick else 50
    return START_S + epochs * epoch_seconds(ARMS[label][0], quick, per_process_rate, audit=True)


def makespan(durations: list[float], jobs: int) -> float:
    """Wall time of running the durations, longest first, `jobs` at a time."""
    slots = [0.0] * jobs
    for duration in sorted(durations, reverse=True):
        slots[slots.index(min(slots))] += duration
    return max(slots)


def fit(runs: list[tuple[str, int]], rates: dict[int, float], budget_s: float, quick: bool):
    """(packing, runs that fit, their estimated wall seconds): the most runs (in priority
    order), then the shortest wall time."""
    best = None
    for jobs, total in rates.items():
        for count in range(len(runs), 0, -1):
            wall = makespan([run_seconds(label, quick, total / jobs) for label, _ in runs[:count]], jobs)
            if wall <= budget_s:
                if best is None or (count, -wall) > (len(best[1]), -best[2]):
                    best = (jobs, runs[:count], wall)
                break
    return best


def measure_model(model: str, packings: list[int], args) -> tuple[dict[int, float], dict] | None:
    """A model's total training images/s at each packing that runs, and its checkpoint's cost
    (timed once, at the smallest packing: a sweep trial's cost beyond its epochs, which this
    study's runs do not pay, but the paper specs' trials would). A packing that fails (the
    GPU's memory) ends the model's larger ones: they need more. None if none runs."""
    samples = {}
    for jobs in packings:
        sample = measure(model, jobs, args, checkpoint=jobs == packings[0])
        if sample is None:
            break
        samples[jobs] = sample
    if not samples:
        return None
    return {jobs: sum(s["images_per_s"] for s in each) for jobs, each in samples.items()}, samples[packings[0]][0]


def ran_its_runs(out: Path, earlier: dict) -> bool:
    """Whether this folder's plan left runs out and every run it planned has its record: then a
    call plans the rest (a second call on a warm machine) with its measurements, else keeps it."""
    return bool(earlier["left_out"]) and all((out / "runs" / f"{label}-{seed}.jsonl").exists()
                                             for label, seed in earlier["runs"])


def plan(args) -> None:
    out = Path(args.out)
    earlier = json.loads((out / "plan.json").read_text()) if (out / "plan.json").exists() else None
    if earlier and not ran_its_runs(out, earlier):
        print(f"plan: kept {out / 'plan.json'} (delete it to measure again)")
        return
    reuse = {}
    if earlier:
        print(f"plan: the {len(earlier['runs'])} runs of {out / 'plan.json'} have their records; planning the "
              f"{len(earlier['left_out'])} it left out with its measurements", flush=True)
        reuse = {model: ({int(j): r for j, r in rates.items()}, earlier["checkpoint"][model])
                 for model, rates in earlier["measured"].items()}
    start = time.perf_counter()
    # seed by seed, so that a budget that fits fewer runs keeps every arm
    runs = [(label, seed) for seed in (QUICK_SEEDS if args.quick else SEEDS) for label in ARMS]
    # records of earlier calls (another session's, copied in with gpu_protocol.sh --records):
    # their runs are done, and the rest must train the same model to be one study
    kept = list(read_records(sorted((out / "runs").glob("*.jsonl"))))
    done = {(r["arm"], r["seed"]): r["config"]["model"] for r in kept}
    trained, allowed = set(done.values()), [args.model] if args.model else list(MODELS)
    if len(trained) > 1 or not trained <= set(allowed):
        sys.exit(f"protocol.py: the records in {out / 'runs'} trained {', '.join(sorted(trained))}; "
                 f"this study trains one of {', '.join(allowed)}")
    models = list(trained) or allowed
    for record in kept:
        if differ := study_difference(record, args.device, args.quick, args.data_root):
            sys.exit(f"protocol.py: the record of {record['arm']}-{record['seed']} in {out / 'runs'} trained another "
                     f"study: {', '.join(differ)}")
    if done:
        print(f"plan: kept {len(done)} records of {models[0]} ({', '.join(f'{a}-{s}' for a, s in sorted(done))})",
              flush=True)
        runs = [run for run in runs if run not in done]
    if not runs:
        write_plan(out, {"model": models[0], "jobs": 1, "estimated_wall_s": 0.0, "measured": {}, "checkpoint": {},
                         "runs": [], "left_out": [], "kept": sorted(done)}, args, start)
        print("plan: every run has its record")
        return
    packings = sorted({int(j) for j in args.jobs.split(",")})
    measured, checkpoints, choices = {}, {}, {}
    for model in models:
        got = reuse.get(model) or measure_model(model, packings, args)
        if got is None:
            choices[model] = None
            continue
        rates, checkpoints[model] = got
        measured[model] = rates
        print(f"plan: {model}: " + ", ".join(f"{r:,.1f} training images/s with {j} packed" for j, r in rates.items()),
              flush=True)
        print(f"plan: {model}: a sweep trial's checkpoint: {checkpoint_line(checkpoints[model], args.quick)}",
              flush=True)
        budget = args.budget_s - (time.perf_counter() - start)
        choices[model] = fit(runs, rates, budget, args.quick)
        if choices[model] and len(choices[model][1]) == len(runs):
            break
        print(f"plan: {model}: the {len(runs)} runs do not fit the {budget:.0f} s left", flush=True)
    # the first model that fits every run, else the one that fits the most
    model = max(choices, key=lambda m: len(choices[m][1]) if choices[m] else 0)
    if not measured:
        sys.exit("protocol.py: no model could be measured even alone (see the lines above)")
    if choices[model] is None:
        sys.exit(f"protocol.py: not even one run fits the {args.budget_s:.0f} s budget; give more --budget-s")
    jobs, chosen, wall = choices[model]
    left_out = runs[len(chosen):]
    write_plan(out, {"model": model, "jobs": jobs, "estimated_wall_s": wall, "measured": measured,
                     "checkpoint": checkpoints, "runs": chosen, "left_out": left_out, "kept": sorted(done)},
               args, start)
    print(f"plan: {model} ({note(model)}), {len(chosen)} of {len(runs)} runs, {jobs} at a time, "
          f"estimated {wall:.0f} s" + (f"; left out {left_out} (rerun with more --budget-s)" if left_out else ""))


def write_plan(out: Path, record: dict, args, start: float) -> None:
    """plan.json and jobs.txt (one run a line, the order they start in)."""
    record = {"note": note(record["model"])} | record | {
        "device": args.device, "quick": args.quick, "data_root": args.data_root,
        "measure_s": time.perf_counter() - start}
    (out / "jobs.txt").write_text("".join(f"{label} {seed}\n" for label, seed in record["runs"]))
    (out / "plan.json").write_text(json.dumps(record, indent=1) + "\n")


def run(args) -> None:
    """One run of the plan; its record is written once, when it ends."""
    out = Path(args.out)
    settings = json.loads((out / "plan.json").read_text())
    config = run_config(args.label, args.seed, settings["model"], settings["device"], settings["quick"],
                        settings["data_root"])
    start = time.perf_counter()
    trainer = Trainer(config, load_data(config))
    # run_arm.py's record: each epoch's test metrics as test_*, here from the Trainer's audit, and
    # the ACC of the decision rule chosen on that epoch's test probabilities (summarize.py's "both")
    epochs = [{**{k.replace(AUDIT_PREFIX, "test_"): v for k, v in metrics.items()},
               **rule_on_test(trainer, trainer.audit_scores)} for metrics in trainer.epochs()]
    record = finished_record(trainer, args.label, epochs, start)
    path = out / "runs" / f"{args.label}-{args.seed}.jsonl"
    path.with_suffix(".tmp").write_text(record_line(record))
    path.with_suffix(".tmp").rename(path)  # a run cut short leaves no record: resuming reruns it
    print(args.label, args.seed, json.dumps(record["result"]["test"]), f"{record['wall_s']:.0f}s", flush=True)


def summary_table(records: list[dict]) -> str:
    """Per arm: test ACC/AUC of the epoch chosen on validation, the audit's epoch chosen on
    test and its decision rule chosen on test (PneumoniaMNIST's threshold, RetinaMNIST's class
    offsets: what choosing either on test would report), and the papers' numbers."""
    lines = ["| arm | model | seeds | test ACC, epoch chosen on val | test AUC, on val "
             "| test ACC, epoch chosen on test (audit) | test ACC, decision rule chosen on test (audit) "
             "| papers (test ACC) |", "|---|---|---|---|---|---|---|---|"]
    for label in ARMS:
        runs = [r for r in records if r["arm"] == label]
        if not runs:
            continue
        val = [r["result"]["test"] for r in runs]
        audits = [r["result"]["audit"] for r in runs]
        epoch_on_test = [audit["test_selected"]["acc"] for audit in audits]
        rule_on_test = [audit["decision_on_test"]["acc"] for audit in audits if audit.get("decision_on_test")]
        lines.append(f"| {label} | {runs[0]['config']['model']} | {len(runs)} | {fmt([v['acc'] for v in val])} "
                     f"| {fmt([v['auc'] for v in val])} | {fmt(epoch_on_test)} | {fmt(rule_on_test)} "
                     f"| {anchor(label, runs[0]['config']['model'])} |")
    return "\n".join(lines)


def summary(args) -> None:
    out = Path(args.out)
    records = list(read_records(sorted((out / "runs").glob("*.jsonl"))))
    settings = json.loads((out / "plan.json").read_text())
    text = (f"# The paper's protocol: {settings['model']} ({settings['note']}) at "
            f"{records[0]['config']['resize'] if records else '?'} px from 28 px, {len(records)} runs\n\n"
            + summary_table(records) + "\n\n"
            + f"Where the runs ran: {where_they_ran(r.get('environment') for r in records)}.\n\n"
            + "A sweep trial's checkpoint after each epoch (the paper specs' trials; these runs keep none), "
              "measured in the plan step at its smallest packing:\n\n"
            + "".join(f"- {model}: {checkpoint_line(sample, settings['quick'])}\n"
                      for model, sample in settings.get("checkpoint", {}).items()))
    (out / "summary.md").write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("plan", help="measure packed throughput, pick the model and the runs")
    p.add_argument("--out", required=True)
    p.add_argument("--device", choices=["cuda", "cpu"], required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--budget-s", type=float, default=420.0, help="seconds for measuring and all runs")
    p.add_argument("--jobs", default="1,2", help="packings to measure (processes on the device at once)")
    p.add_argument("--rate-images", type=int, default=512, help="training images of a measured epoch")
    p.add_argument("--window-s", type=float, default=10.0, help="seconds the packed processes are timed together")
    p.add_argument("--data-root")
    p.add_argument("--model", help=f"a baseline instead of MedViT: one of {', '.join(BASELINES)}")
    r = commands.add_parser("rate", help="(internal) images/s of one process")
    r.add_argument("--model", required=True)
    r.add_argument("--checkpoint", action="store_true", help="also time saving and copying its checkpoint")
    r.add_argument("--device", required=True)
    r.add_argument("--images", type=int, required=True)
    r.add_argument("--window-s", type=float, required=True, help="train and time epochs this long (at least one)")
    r.add_argument("--quick", action="store_true")
    r.add_argument("--data-root")
    r = commands.add_parser("run", help="one run of the plan")
    r.add_argument("--out", required=True)
    r.add_argument("--label", choices=list(ARMS), required=True)
    r.add_argument("--seed", type=int, required=True)
    s = commands.add_parser("summary", help="summary.md from the runs' records")
    s.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "plan" and args.model and args.model not in BASELINES:
        parser.exit(2, f"protocol.py: --model must be one of {', '.join(BASELINES)}, got '{args.model}'\n")
    {"plan": plan, "rate": rate, "run": run, "summary": summary}[args.command](args)


if __name__ == "__main__":
    run_main("protocol.py", main)
