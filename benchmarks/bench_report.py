"""Benchmark: collect and report on 1,000 synthetic Ray Tune trials.

Synthesises sweep folders laid out exactly as Ray Tune 2.60 writes them (experiment_state
JSON with the two JSON strings per trial, params.json, result.json lines with Ray's own
fields plus medsweep's metrics, progress.csv, checkpoint_NNNNNN/state.pt, error.txt for a
few trials, medsweep_spec.yaml) with an ASHA-like distribution of stop epochs, then times:

* ``analysis.collect.collect`` into a new Parquet file, and again into the existing file
  (the append + de-duplicate path);
* a baseline doing the same reading the common way: ``pandas.read_json(lines=True)`` per
  trial file plus ``json.load`` of params.json, best epoch by ``groupby``, one DataFrame,
  ``to_parquet``;
* ``analysis.report.write_report`` with and without figures.

Usage: ``.venv/bin/python -m benchmarks.bench_report [--trials 1000] [--epochs 50] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from analysis.collect import collect
from analysis.report import write_report
from sweeps.spec import SweepSpec, evaluate_when, load_spec, spec_from_dict

DATASETS = ("retinamnist", "pneumoniamnist", "dermamnist", "pathmnist")


def _stop_epoch(rng: random.Random, epochs: int) -> int:
    """ASHA-like (grace 5, reduction factor 3): 2/3 stop at 5, 2/9 at 15, the rest finish."""
    u = rng.random()
    if u < 2 / 3:
        return min(5, epochs)
    if u < 8 / 9:
        return min(15, epochs)
    return epochs


def bench_spec(dataset: str, name: str, epochs: int) -> SweepSpec:
    """The packaged spec of `dataset`, as a sweep of `epochs` epochs under ASHA (grace 5, factor 3)."""
    data = load_spec(dataset).to_dict()
    data.update(name=name, scheduler={"type": "asha", "max_t": epochs, "grace_period": 5, "reduction_factor": 3})
    data["train"].update(epochs=epochs, batch_size=128)
    return spec_from_dict(data, f"bench spec {name}")


def sample(spec: SweepSpec, rng: random.Random) -> dict:
    """One trial's params.json: a value of each search entry whose condition holds."""
    sampled = {}
    for key, dist in spec.search.items():
        if dist.when is not None and not evaluate_when(dist.when, sampled):
            continue
        if dist.kind in ("choice", "grid"):
            sampled[key] = rng.choice(dist.values)
        elif dist.kind == "int":
            sampled[key] = rng.randint(dist.low, dist.high)
        elif dist.kind == "loguniform":
            sampled[key] = math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
        else:
            sampled[key] = rng.uniform(dist.low, dist.high)
    return sampled


def synthesize(root: Path, n_trials: int, epochs: int, seed: int = 0) -> list[Path]:
    """Write ``n_trials`` trials spread over one sweep per dataset; return the sweep folders."""
    rng = random.Random(seed)
    per = [n_trials // len(DATASETS) + (i < n_trials % len(DATASETS)) for i in range(len(DATASETS))]
    sweeps = []
    blob = "80059582020000" + "ab" * 300  # stands in for Ray's pickled fields (size only)
    for ds, n in zip(DATASETS, per):
        name = f"{ds}-bench"
        sdir = root / name
        sdir.mkdir(parents=True)
        ordinal = ds == "retinamnist"
        spec = bench_spec(ds, name, epochs)
        (sdir / "medsweep_spec.yaml").write_text(spec.to_yaml())
        (sdir / "tuner.pkl").write_bytes(b"\x80\x05N.")
        exp = f"{rng.getrandbits(20):05x}"
        trial_data = []
        for i in range(n):
            tid = f"{exp}_{i:05d}"
            cfg = sample(spec, rng)
            logdir = f"train_medvit_{tid}_{i}_2026-01-01_00-00-00"
            tdir = sdir / logdir
            tdir.mkdir()
            (tdir / "params.json").write_text(json.dumps(cfg, indent=2))
            errored = rng.random() < 0.02
            stop = 1 + rng.randrange(3) if errored else _stop_epoch(rng, epochs)
            quality = rng.uniform(0.3, 0.6)
            lines, t_total, best, best_ep = [], 0.0, -1.0, 0
            for e in range(1, stop + 1):
                acc = quality + 0.25 * (1 - 1 / e) + rng.gauss(0, 0.01)
                if acc > best:
                    best, best_ep = acc, e
                et = rng.uniform(8, 12)
                t_total += et
                m = {"epoch": e, "train_loss": 1.6 / e, "lr": cfg.get("lr", 1e-3), "epoch_time_s": et,
                     "images_per_s": 4000.0, "val_loss": 1.2 / e, "val_acc": acc, "val_auc": min(0.99, acc + 0.2)}
                if ordinal:
                    m.update(val_qwk=acc - 0.1, val_mae=1.2 - acc)
                m.update(best_epoch=best_ep, selected_val_acc=best, timestamp=1767225600 + int(t_total),
                         checkpoint_dir_name=f"checkpoint_{e - 1:06d}", should_checkpoint=True,
                         done=e == stop, training_iteration=e, trial_id=tid, date="2026-01-01_00-00-00",
                         time_this_iter_s=et, time_total_s=t_total, pid=1234, hostname="node-1",
                         node_ip="10.0.0.1", config=cfg, time_since_restore=t_total, iterations_since_restore=e)
                lines.append(m)
            with open(tdir / "result.json", "w") as fh:
                for m in lines:
                    fh.write(json.dumps(m) + "\n")
            pd.DataFrame([{k: v for k, v in m.items() if k != "config"} for m in lines]).to_csv(
                tdir / "progress.csv", index=False)
            (tdir / "events.out.tfevents.1767225600.node-1").write_bytes(b"\0" * 256)
            for e in (stop - 1, stop):  # num_to_keep=2
                if e >= 1:
                    ck = tdir / f"checkpoint_{e - 1:06d}"
                    ck.mkdir()
                    (ck / "state.pt").write_bytes(b"\0" * 1024)
            if errored:
                (tdir / "error.txt").write_text("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n")
            status = "ERROR" if errored else "TERMINATED"
            meta = {"stub": False, "trainable_name": "train_medvit", "trial_id": tid, "status": status,
                    "relative_logdir": logdir, "config": cfg, "storage": {"_type": "CLOUDPICKLE_FALLBACK", "value": blob},
                    "placement_group_factory": blob, "experiment_tag": str(i)}
            runtime = {"start_time": 1767225600.0, "num_failures": int(errored), "error_filename": "error.txt" if errored else None,
                       "last_result": lines[-1] if lines else {}}
            trial_data.append([json.dumps(meta, indent=2), json.dumps(runtime, indent=2)])
        state = {"trial_data": trial_data, "runner_data": {"_metric": "val_acc"}, "stats": {"start_time": 1767225600.0}}
        (sdir / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
        sweeps.append(sdir)
    return sweeps


def baseline_collect(sweep_dirs: list[Path], out: Path) -> pd.DataFrame:
    """The common way: pandas.read_json per result.json, params.json via json, one frame."""
    rows = []
    for sdir in sweep_dirs:
        spec = yaml.safe_load((sdir / "medsweep_spec.yaml").read_text())
        metric = spec["metric"]
        for tdir in sorted(p for p in sdir.iterdir() if (p / "params.json").exists()):
            cfg = json.loads((tdir / "params.json").read_text())
            res = tdir / "result.json"
            hist = pd.read_json(res, lines=True) if res.stat().st_size else pd.DataFrame()
            row = {"sweep": sdir.name, "sweep_dir": str(sdir), **{k: cfg.get(k) for k in cfg},
                   "error": (tdir / "error.txt").read_text().strip().splitlines()[-1] if (tdir / "error.txt").exists() else None}
            if len(hist):
                i = hist[metric].idxmax()
                row.update(trial_id=hist["trial_id"].iloc[0], epochs_run=len(hist), best_value=hist.loc[i, metric],
                           best_epoch=int(hist.loc[i, "epoch"]), train_time_s=float(hist["epoch_time_s"].sum()),
                           history_epoch=hist["epoch"].tolist(), history_val_metric=hist[metric].tolist())
            ckpts = sorted(tdir.glob("checkpoint_*"))
            row["checkpoint_path"] = str(ckpts[-1]) if ckpts else None
            rows.append(row)
    df = pd.DataFrame(rows)
    df.to_parquet(out)
    return df


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the synthetic folders")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="medsweep-bench-"))
    try:
        t0 = time.perf_counter()
        sweeps = synthesize(tmp / "ray", args.trials, args.epochs)
        n_lines = sum(len(r.read_text().splitlines()) for s in sweeps for r in s.glob("*/result.json"))
        print(f"synthesised {args.trials} trials ({n_lines} result lines, {len(sweeps)} sweeps) "
              f"in {time.perf_counter() - t0:.1f} s under {tmp}")
        out = tmp / "results.parquet"

        def fresh():
            if out.exists():
                out.unlink()
            return collect(sweeps, out)

        t_collect, table = best_of(fresh, args.repeat)
        t_recollect, table2 = best_of(lambda: collect(sweeps, out), args.repeat)
        assert table.num_rows == table2.num_rows == args.trials
        t_base, base = best_of(lambda: baseline_collect(sweeps, tmp / "baseline.parquet"), args.repeat)
        assert len(base) == args.trials
        t_rep_nofig, _ = best_of(lambda: write_report(out, tmp / "report_nofig", figures=False), args.repeat)
        t_rep, (html_path, _) = best_of(lambda: write_report(out, tmp / "report"), args.repeat)

        rows = [
            (f"collect {args.trials:,} trials -> new Parquet", t_collect, t_base),
            ("collect again (append + de-duplicate)", t_recollect, t_base),
            ("write_report, tables only", t_rep_nofig, None),
            ("write_report, tables + figures + HTML", t_rep, None),
        ]
        print(f"\nbest of {args.repeat} runs; baseline = pandas.read_json(lines=True) per trial "
              f"+ params.json + groupby + to_parquet ({t_base:.2f} s)\n")
        print(f"| {'step':<40} | {'medsweep (s)':>12} | {'baseline (s)':>12} | {'speed-up':>8} |")
        print(f"|{'-' * 42}|{'-' * 14}|{'-' * 14}|{'-' * 10}|")
        for name, t, b in rows:
            bs = f"{b:12.2f}" if b is not None else f"{'–':>12}"
            ratio = f"{b / t:7.1f}x" if b is not None else f"{'–':>8}"
            print(f"| {name:<40} | {t:12.2f} | {bs} | {ratio} |")
        print(f"\nreport.html: {html_path.stat().st_size / 1e6:.2f} MB; "
              f"results.parquet: {out.stat().st_size / 1e6:.2f} MB")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
