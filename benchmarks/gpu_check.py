"""The GPU check: train, reload, throughput, trial packing and the usual-loop comparison.

Run it through ``benchmarks/gpu_check.sh`` (which brings pydantic and medmnist as wheels where
they are missing); every step writes a Markdown or JSON file under ``--out``:

  train_check.json  (a) 3 epochs of the recommended preset on real RetinaMNIST: metrics finite,
                    the selected model reloads from its checkpoint and predicts what the trainer
                    did; fp32, bf16 autocast and channels-last predictions of that model agree;
                    ``python -m medsweep train`` runs with Ray unimportable
  throughput.md     (b) training images/s of each 28 px preset and resnet18_28, batch 128 and
                    512, fp32 / bf16 autocast x contiguous / channels-last
  packing.md        (c) 1, 2, 4, 8 concurrent training processes on the one device, total images/s
  usual_loop.md     (d) ``bench_epoch.py`` on the device: our Trainer against the usual loop
  tests.log         (e) on CUDA: the fast-path tests (their CUDA parts run there)
  compile.md        (f) the bare step's training images/s eager against each torch.compile mode
  trainer.md        (g) the Trainer's images/s with the ``compile`` field and with bf16 (the
                    ``precision`` field) against fp32 eager;
  packed_compile.md (h) 8 packed processes eager, then with ``compile: true`` from a cold and
                    from a warm shared inductor cache: total images/s and start-up seconds;
                    (f), (g) and (h) only when ``--steps`` names them (compiling takes minutes)
  step_224.md       (i) the MedViT paper's protocol: ``medvit_base`` (its MedViT-S) at 224 px,
                    the bare step in bf16 contiguous, channels-last and channels-last with cuDNN's
                    autotuning, and fp32 (``bench_epoch.py --step-table``): images/s, model FLOPs
                    utilisation, memory
  notebook_224.md   (j) the official MedViT notebook's loop at 224 px (PIL ``Resize``, ``AugMix``,
                    a DataLoader of 0, 2 and 8 workers) against the Trainer, ``medvit_base``:
                    input pipeline and whole epochs
  compile_224.md    (k) (i)'s step compiled, cut off at 300 s (compiling medvit_base may take
                    minutes); (i), (j) and (k) only when ``--steps`` names them
  summary.md        every table above and the verdict of each check

Nothing here imports Ray (``sys.modules["ray"] = None`` makes any attempt fail loudly), so the
check proves the training path runs where Ray is not installed. ``--quick`` shrinks every size
(same code path) so that ``--device cpu --quick`` runs in minutes on a laptop.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.modules["ray"] = None  # type: ignore[assignment]  # an import of Ray fails: the path is Ray-free

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.device_args import device_parser  # noqa: E402
from benchmarks.trial_packing import run_packed  # noqa: E402
from medvit.config import build_config  # noqa: E402
from medvit.models import create_model  # noqa: E402
from medvit.synthetic import write_synthetic  # noqa: E402
from medvit.train import COMPILE_MODE, Trainer, load_checkpoint_model, load_data, normalise  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

PRESET = "medvit_28_tiny"  # the recommended preset: the CPU spec's and the fastest 28 px MedViT
THROUGHPUT_MODELS = ("medvit_28_tiny", "medvit_28_small", "medvit_28_base", "resnet18_28")
MODES = {  # name: (autocast to bf16, channels-last)
    "fp32": (False, False),
    "fp32 channels-last": (False, True),
    "bf16": (True, False),
    "bf16 channels-last": (True, True),
}
PACKING_FLAG = "pathmnist"  # the synthetic data of packing and compile timings
QUICK_TIMING = dict(warmup=0, seconds=0.0, min_steps=1)  # --quick: one step, the code path only
STEPS = "abcdfgehijk"  # in the order they run; (e), the tests, runs on CUDA only
DEFAULT_STEPS = "abcde"  # under 8 minutes on an H100; (f), (g), (h) about 5, 4 and 5 more (compilations)
RAY_BLOCKED = "import sys; sys.modules['ray'] = None; from medsweep.cli import run; run()"  # the medsweep command


def finite(values) -> bool:
    return all(math.isfinite(v) for v in values if isinstance(v, float))


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        memory = torch.cuda.get_device_properties(device).total_memory / 2**30
        return f"{name} ({memory:.0f} GiB), torch {torch.__version__}, {os.cpu_count()} CPUs"
    return f"CPU, {os.cpu_count()} cores, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- (a) train, reload, agree ----------------------------------------------------------------

@torch.no_grad()
def predictions(model: torch.nn.Module, images: torch.Tensor, device: torch.device, bf16: bool,
                channels_last: bool) -> torch.Tensor:
    """Softmax probabilities of ``model`` on uint8 images, in one of the four modes."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).eval()
    out = []
    for chunk in images.split(512):
        x = normalise(chunk.to(device)).contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(model(x).float().softmax(1))
    return torch.cat(out).cpu()


def train_check(args, device: torch.device, work: Path) -> dict:
    epochs = 3
    config = build_config({"dataset": "retinamnist", "model": PRESET, "epochs": epochs, "device": device.type,
                           "data_root": args.data_root, "subset": 128 if args.quick else None})
    data = load_data(config)
    trainer = Trainer(config, data)
    history = []
    for metrics in trainer.epochs():
        trainer.save(work)  # every epoch, as a sweep trial checkpoints
        history.append(metrics)
    result = trainer.finish()
    numbers = [v for m in history for v in m.values()] + list(result["val"].values()) + list(result["test"].values())

    # The selected weights reloaded from the checkpoint predict what the trainer's model does.
    reloaded, _ = load_checkpoint_model(work)
    val = data.images["val"]
    mine = predictions(trainer.eval_model, val, device, bf16=False, channels_last=False)
    theirs = predictions(reloaded, val, device, bf16=False, channels_last=False)
    reload_diff = float((mine - theirs).abs().max())

    # The same trained model in each mode: probabilities and arg-max against fp32.
    agreement = {}
    for mode, (bf16, channels_last) in MODES.items():
        probs = predictions(reloaded, val, device, bf16, channels_last)
        agreement[mode] = {"max_prob_diff": float((probs - theirs).abs().max()),
                           "argmax_agree": float((probs.argmax(1) == theirs.argmax(1)).float().mean())}

    cli_out = work / "cli"
    cli = subprocess.run(
        [sys.executable, "-c", RAY_BLOCKED, "train", "--dataset", "retinamnist", "--model", PRESET, "--epochs", "1",
         "--subset", "64", "--device", device.type, "--data-root", args.data_root, "--out", str(cli_out)],
        capture_output=True, text=True, cwd=REPO,
    )
    cli_metrics = json.loads((cli_out / "metrics.json").read_text()) if cli.returncode == 0 else {}

    checks = {
        "metrics finite": finite(numbers),
        "selected model reloads (max prob diff < 1e-5)": reload_diff < 1e-5,
        "bf16 / channels-last agree with fp32 (prob diff < 0.05, arg-max >= 95%)": all(
            a["max_prob_diff"] < 0.05 and a["argmax_agree"] >= 0.95 for a in agreement.values()),
        "medsweep train runs without Ray": cli.returncode == 0 and finite(cli_metrics["test"].values()),
    }
    return {"checks": checks, "history": history, "selected_epoch": result["selected_epoch"],
            "val": result["val"], "test": result["test"], "reload_max_prob_diff": reload_diff,
            "agreement": agreement, "cli_returncode": cli.returncode, "cli_stderr_tail": cli.stderr[-2000:]}


# -- (b) throughput per model, batch and mode ------------------------------------------------

def step_rate(name: str, batch: int, bf16: bool, channels_last: bool, device: torch.device,
              warmup: int, seconds: float, min_steps: int, compile_mode: str | None = None) -> float:
    """Training images/s: forward, loss on fp32 logits, backward, AdamW step (as Trainer does);
    with ``compile_mode`` the forward is ``torch.compile``d (the warm-up steps compile it)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(name, in_chans=3, num_classes=5).to(device, memory_format=fmt).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    forward = torch.compile(model, mode=compile_mode) if compile_mode else model
    x = torch.randn(batch, 3, 28, 28, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 5, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        step()
        steps += 1
        if steps % 10 == 0:
            _sync(device)
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def throughput(args, device: torch.device) -> str:
    batches = (8,) if args.quick else (128, 512)
    timing = QUICK_TIMING if args.quick else dict(warmup=5, seconds=1.5, min_steps=10)
    lines = ["| model | batch | " + " | ".join(MODES) + " | best vs fp32 |",
             "|---|---:|" + "---:|" * (len(MODES) + 1)]
    for name in THROUGHPUT_MODELS:
        for batch in batches:
            rates = [step_rate(name, batch, *mode, device, **timing) for mode in MODES.values()]
            cells = " | ".join(f"{r:,.0f}" for r in rates)
            lines.append(f"| {name} | {batch} | {cells} | {max(rates) / rates[0]:.2f}x |")
            print(lines[-1], flush=True)
    return "Training images/s (forward + backward + AdamW), 3x28x28, 5 classes\n\n" + "\n".join(lines)


# -- (f) torch.compile ----------------------------------------------------------------------

COMPILE_ROWS = (  # model, mode name, compile mode (None: eager, the baseline of the same run)
    ("medvit_28_tiny", "fp32 channels-last", None),
    ("medvit_28_tiny", "fp32 channels-last", "default"),
    ("medvit_28_tiny", "fp32 channels-last", "reduce-overhead"),
    ("medvit_28_small", "fp32 channels-last", None),
    ("medvit_28_small", "fp32 channels-last", "default"),
    ("medvit_28_tiny", "bf16 channels-last", "default"),
)


def trainer_rate(config: dict) -> float:
    """Best training images/s of ``Trainer`` on ``config`` over the epochs after the first
    (which compiles); a non-finite metric fails the step."""
    config = build_config(config)
    history = list(Trainer(config, load_data(config)).epochs())
    if not finite([v for m in history for v in m.values()]):
        raise RuntimeError(f"compile={config.compile}: non-finite metrics {history[-1]}")
    return max(m["images_per_s"] for m in history[1:])


class RateTable:
    """A table of training images/s rows, each against its (model, what)'s first row; rows
    land in ``path`` as they finish, so a run cut short keeps the rows it timed, and a row
    whose measurement raises is a finding ("failed"), not the end of the step."""

    def __init__(self, path: Path):
        self.path, self.baseline = path, {}
        self.lines = ["| model | what | mode | compile | images/s | vs fp32 eager | row s |",
                      "|---|---|---|---|---:|---:|---:|"]

    def row(self, name: str, what: str, mode: str, compiled_as: str, measure) -> None:
        torch._dynamo.reset()
        start = time.perf_counter()
        try:
            rate = measure()
        except Exception as exc:
            self.lines.append(f"| {name} | {what} | {mode} | {compiled_as} | failed: {type(exc).__name__} | | |")
        else:
            self.baseline.setdefault((name, what), rate)
            self.lines.append(f"| {name} | {what} | {mode} | {compiled_as} | {rate:,.0f} | "
                              f"{rate / self.baseline[name, what]:.2f}x | {time.perf_counter() - start:.0f} |")
        print(self.lines[-1], flush=True)
        self.path.write_text("\n".join(self.lines) + "\n")

    def text(self, title: str) -> str:
        if any("failed" in line for line in self.lines):
            raise RuntimeError(f"a row failed ({self.path.name})")
        return title + "\n\n" + "\n".join(self.lines)


def compiled_step(args, device: torch.device, out: Path) -> str:
    """(f) The bare step's training images/s at batch 128, eager against each compile mode;
    --quick times the eager row only (compiling on a CPU takes minutes a row)."""
    table = RateTable(out / "compile.md")
    timing = QUICK_TIMING if args.quick else dict(warmup=3, seconds=3.0, min_steps=20)
    for name, mode, compile_mode in COMPILE_ROWS[:1] if args.quick else COMPILE_ROWS:
        table.row(name, "step", mode, compile_mode or "eager",
                  lambda: step_rate(name, 128, *MODES[mode], device, compile_mode=compile_mode, **timing))
    return table.text("torch.compile, the bare step's training images/s at batch 128 (forward, backward, AdamW "
                      "on one batch; row s: build, compilation and timing)")


def compiled_trainer(args, device: torch.device, work: Path, out: Path) -> str:
    """(g) The Trainer, as a sweep trial runs it, with ``precision: bf16`` and with ``compile``,
    against fp32 eager: whole epochs of the synthetic PathMNIST after the first (which compiles)."""
    table = RateTable(out / "trainer.md")
    config = {"dataset": PACKING_FLAG, "model": PRESET, "epochs": 3, "device": device.type,
              "data_root": str(synthetic_root(args, work))}
    for precision, flag in (("fp32", False), ("bf16", False), ("fp32", True)):
        compiled_as = f"compile: true ({COMPILE_MODE[device.type] or 'default'})" if flag else "eager"
        table.row(PRESET, "Trainer", f"{precision} channels-last", compiled_as,
                  lambda: trainer_rate(config | {"precision": precision, "compile": flag}))
    return table.text("The Trainer's training images/s at batch 128: whole epochs after the first "
                      "(row s: data, compilation and 3 epochs)")


def synthetic_train_size(args) -> int:
    return 128 if args.quick else 20_000


def synthetic_root(args, work: Path) -> Path:
    """PathMNIST-like synthetic files, written once: RetinaMNIST's 1,080 training images are a
    fraction of a second per epoch on a GPU, too short to time against start-up or compilation."""
    root = work / "synthetic"
    if not root.exists():
        n_train = synthetic_train_size(args)
        write_synthetic(PACKING_FLAG, root, n_per_split=(n_train, n_train // 10, n_train // 10))
    return root


# -- (c) packing: concurrent training processes on one device -------------------------------

def packing(args, device: torch.device, work: Path) -> str:
    counts = (1, 2) if args.quick else (1, 2, 4, 8)
    timed_epochs = 1 if args.quick else 2
    n_train = synthetic_train_size(args)
    config = {"dataset": PACKING_FLAG, "model": PRESET, "epochs": 1 + timed_epochs, "device": device.type,
              "data_root": str(synthetic_root(args, work))}
    lines = ["| processes | total images/s | vs 1 process | per process, training part | peak GPU MiB per process |",
             "|---:|---:|---:|---:|---:|"]
    base = None
    for count in counts:
        threads = 1 if device.type == "cpu" else max(1, (os.cpu_count() or 1) // count)
        r = run_packed(config, count, threads=threads, work=work)
        base = base or r["total_images_per_s"]
        lines.append(f"| {count} | {r['total_images_per_s']:,.0f} | {r['total_images_per_s'] / base:.2f}x | "
                     f"{r['train_images_per_s']:,.0f} | {r['peak_gpu_mib']:,.0f} |")
        print(lines[-1], flush=True)
    return (f"{PRESET}, synthetic {PACKING_FLAG} ({n_train} training images), batch 128, {timed_epochs} timed epochs per "
            "process after a warm-up epoch; total = all processes' images / wall time of the timed epochs "
            "(validation included)\n\n" + "\n".join(lines))


def packed_compile(args, device: torch.device, work: Path, out: Path) -> str:
    """(h) What a GPU sweep with ``compile: true`` would see: 8 trials packed on the device,
    eager against compiled, the compiled ones first with an empty inductor cache shared by all
    (every process compiles) and again with the cache the first round filled (what the second
    wave of trials of a sweep meets). --quick: 2 processes, eager only."""
    count = 2 if args.quick else 8
    threads = 1 if device.type == "cpu" else max(1, (os.cpu_count() or 1) // count)
    config = {"dataset": PACKING_FLAG, "model": PRESET, "epochs": 2 if args.quick else 3, "device": device.type,
              "data_root": str(synthetic_root(args, work))}
    env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(work / "inductor-cache")}  # one cache for all rounds
    rows = [("eager", False)] if args.quick else [("eager", False), ("compile, cold cache", True),
                                                   ("compile, warm cache", True)]
    lines = [f"| {count} processes | total images/s | vs eager | start-up to the timed epochs, s |",
             "|---|---:|---:|---:|"]
    base = None
    for what, flag in rows:
        r = run_packed(config | {"compile": flag}, count, threads=threads, work=work, env=env)
        base = base or r["total_images_per_s"]
        lines.append(f"| {what} | {r['total_images_per_s']:,.0f} | {r['total_images_per_s'] / base:.2f}x | "
                     f"{r['warmup_s']:.0f} |")
        print(lines[-1], flush=True)
        (out / "packed_compile.md").write_text("\n".join(lines) + "\n")
    return (f"{PRESET}, synthetic {PACKING_FLAG} ({synthetic_train_size(args)} training images), {count} processes "
            f"at once, batch 128, fp32, compile mode {COMPILE_MODE[device.type] or 'default'}; start-up = the "
            "slowest process's data, context, warm-up epoch and compilation\n\n" + "\n".join(lines))


# -- (d) usual loop, (e) tests ---------------------------------------------------------------

def bench_epoch(device: torch.device, *argv: str, timeout: float | None = None) -> str:
    """bench_epoch.py's output on the device; a RuntimeError with its last lines if it fails."""
    command = [sys.executable, "-m", "benchmarks.bench_epoch", "--device", device.type, *argv]
    try:
        run = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"bench_epoch.py {' '.join(argv)}: no result in {timeout:.0f} s") from None
    if run.returncode != 0:
        raise RuntimeError(f"bench_epoch.py failed:\n{run.stderr[-3000:]}")
    return run.stdout


def usual_loop(args, device: torch.device) -> str:
    size = ["--subset", "128", "--rounds", "1", "--models", PRESET] if args.quick else ["--rounds", "3"]
    threads = ["--threads", "1"] if device.type == "cpu" else []
    return bench_epoch(device, "--data-root", args.data_root, *size, *threads)


# -- (i), (j), (k) the paper's protocol at 224 px: bench_epoch.py on the device ---------------

PROTOCOL_MODEL = "medvit_base"  # the MedViT paper's MedViT-S, which the protocol study trains
PROTOCOL_STEP = ["--step-table", "--table-models", PROTOCOL_MODEL, "--resize", "224", "--steps", "10"]
# --quick: the code path of the same table, a 28 px preset at 32 px
QUICK_STEP = ["--step-table", "--table-models", PRESET, "--resize", "32", "--batch", "2", "--steps", "1"]
# a compilation that runs past this is cut off there rather than taking the call with it
COMPILE_TIMEOUT_S = 300


def protocol_step(args, device: torch.device) -> str:
    """(i) The bare step of the paper's MedViT-S at 224 px per way of running it, eager."""
    if args.quick:
        return bench_epoch(device, *QUICK_STEP, "--variants", "bf16,bf16-cl,bf16-cl-cudnn")
    return bench_epoch(device, *PROTOCOL_STEP, "--variants", "bf16,bf16-cl,bf16-cl-cudnn,fp32-cl")


def protocol_step_compiled(args, device: torch.device) -> str:
    """(k) (i)'s step compiled, in a process of its own; --quick: the same on the CPU (minutes)."""
    return bench_epoch(device, *(QUICK_STEP if args.quick else PROTOCOL_STEP), "--variants", "bf16-cl-compile",
                       timeout=COMPILE_TIMEOUT_S)


def protocol_loop(args, device: torch.device) -> str:
    """(j) The notebook's loop at 224 px against the Trainer; --quick: a 28 px preset at 32 px
    on 16 images, no DataLoader workers (8 worker processes on a small CPU take minutes)."""
    if args.quick:
        size = ["--models", PRESET, "--resize", "32", "--subset", "16", "--batch", "8", "--workers", "0",
                "--rounds", "1", "--threads", "1"]
    else:
        size = ["--models", PROTOCOL_MODEL, "--resize", "224", "--workers", "0,2,8", "--rounds", "2"]
    return bench_epoch(device, "--augment", "augmix", "--data-root", args.data_root, *size)


def fast_path_tests(args, out: Path) -> bool:
    # the tests' real-data fixture reads MEDMNIST_ROOT (retinamnist.npz and pneumoniamnist.npz)
    env = os.environ | {"MEDMNIST_ROOT": args.data_root}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_bench_fastpath.py", "tests/test_augment.py", "tests/test_augmix.py"],
                         capture_output=True, text=True, cwd=REPO, env=env)
    (out / "tests.log").write_text(run.stdout + run.stderr)
    return run.returncode == 0


def main() -> int:
    parser = device_parser(__doc__.splitlines()[0], STEPS, DEFAULT_STEPS)
    args = parser.parse_args()

    device = torch.device(args.device)
    warnings.filterwarnings("ignore", message="MD5 mismatch")  # synthetic files differ from medmnist's, by design
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible")
    if device.type == "cpu":
        # On a CPU the check proves the code path, not speed; one thread per process keeps it
        # from crawling on a busy machine, where threads wait for each other's cores.
        torch.set_num_threads(1)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary = [f"# GPU check{' (quick)' if args.quick else ''}", "", f"device: {describe_device(device)}", ""]
    checks: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        steps = {
            "a": ("(a) train 3 epochs, reload, agree", "train_check.json", lambda: train_check(args, device, work)),
            "b": ("(b) throughput", "throughput.md", lambda: throughput(args, device)),
            "c": ("(c) packing", "packing.md", lambda: packing(args, device, work)),
            "d": ("(d) usual loop", "usual_loop.md", lambda: usual_loop(args, device)),
            "f": ("(f) torch.compile, the bare step", "compile.md", lambda: compiled_step(args, device, out)),
            "g": ("(g) the Trainer: compile, bf16", "trainer.md", lambda: compiled_trainer(args, device, work, out)),
            "h": ("(h) packed trials compiled", "packed_compile.md", lambda: packed_compile(args, device, work, out)),
            "i": ("(i) the step at 224 px", "step_224.md", lambda: protocol_step(args, device)),
            "j": ("(j) the notebook's loop at 224 px", "notebook_224.md", lambda: protocol_loop(args, device)),
            "k": ("(k) the step at 224 px compiled", "compile_224.md", lambda: protocol_step_compiled(args, device)),
        }
        for title, name, run in (steps[letter] for letter in STEPS if letter in args.steps and letter in steps):
            print(f"== {title}", flush=True)
            step_start = time.perf_counter()
            try:
                result = run()
            except Exception as exc:  # one failed step must not hide the others' figures
                checks[title] = False
                summary += [f"## {title}: FAILED", "", f"    {type(exc).__name__}: {exc}", ""]
                print(f"FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            seconds = time.perf_counter() - step_start
            if isinstance(result, dict):
                (out / name).write_text(json.dumps(result, indent=2))
                checks |= result["checks"]
                body = "\n".join(f"- {'ok  ' if ok else 'FAIL'} {check}" for check, ok in result["checks"].items())
                body += f"\n\nselected epoch {result['selected_epoch']}; val {result['val']}; test {result['test']}"
                body += "\n\n" + "\n".join(f"- {m}: {a}" for m, a in result["agreement"].items())
            else:
                (out / name).write_text(result + "\n")
                checks[title] = True
                body = result
            summary += [f"## {title} ({seconds:.0f} s)", "", body, ""]
            print(body, flush=True)
    if device.type == "cuda" and "e" in args.steps:
        checks["(e) fast-path tests on the GPU (tests.log)"] = fast_path_tests(args, out)
    summary += ["## Verdict", ""] + [f"- {'ok  ' if ok else 'FAIL'} {check}" for check, ok in checks.items()]
    summary += ["", f"total {time.perf_counter() - started:.0f} s"]
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary[-len(checks) - 2:]))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
