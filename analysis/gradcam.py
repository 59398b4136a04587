"""GradCAM maps and the paper's Figure 4 style comparison grid.

* :func:`gradcam_maps` -- GradCAM (``pytorch_grad_cam``) maps of a model for chosen classes,
  at the model's ``gradcam_layer()``.
* :func:`predict` -- predicted classes (argmax) of a batch.
* :func:`pick_examples` -- indices of the first images of given grades (e.g. 1 and 2).
* :func:`build_rows` -- the per-image data of the grid for several models.
* :func:`choose_images` -- the grid's images: of each grade in turn, the first on which the
  compared models disagree (else one that varies the predictions), and a sentence saying so.
* :func:`gradcam_checkpoints` -- the grid for trained checkpoints (MedViT or ResNet) on
  chosen images of a MedMNIST split (what ``medsweep gradcam`` and the report use).
* :func:`gradcam_figure` -- the grid: one row per image, columns original, then one overlay
  per model (e.g. cross-entropy and Ordinal Loss), each panel titled with true and
  predicted grade.

Typical use (the CLI does this with two trained RetinaMNIST checkpoints)::

    idx = pick_examples(labels, grades=(1, 2))
    rows = build_rows(images[idx], labels[idx], {"CE (α=0)": ce_model, "Ordinal (α=0.2)": ord_model})
    gradcam_figure(rows, "reports/figures/gradcam_retina.png")
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from sweeps.paths import local_folder

__all__ = ["CamFigure", "CamOverlay", "CamRow", "ImageChoice", "gradcam_maps", "predict", "pick_examples",
           "pick_images", "choose_images", "build_rows", "gradcam_figure", "gradcam_checkpoints", "to_display_image"]


def gradcam_maps(model: torch.nn.Module, images: torch.Tensor, target_classes: Sequence[int]) -> np.ndarray:
    """GradCAM maps of ``model`` for ``target_classes[i]`` on ``images[i]``.

    Args:
        model: a medsweep model (has ``gradcam_layer()``); it is put in eval mode and left so.
        images: float tensor ``(B, C, H, W)``, normalised the way the model was trained.
        target_classes: one class index per image (e.g. the true or the predicted grade).

    Returns:
        ``float32`` array ``(B, H, W)`` in [0, 1] (pytorch_grad_cam upsamples each map to the
        input size and scales it per image).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if len(target_classes) != images.shape[0]:
        raise ValueError(f"need one target class per image: {len(target_classes)} for {images.shape[0]} images")
    if not hasattr(model, "gradcam_layer"):
        raise ValueError(f"{type(model).__name__} has no gradcam_layer()")
    model.eval()
    device = next(model.parameters()).device
    x = images.detach().to(device=device, dtype=torch.float32)
    targets = [ClassifierOutputTarget(int(k)) for k in target_classes]
    with GradCAM(model=model, target_layers=[model.gradcam_layer()]) as cam:
        maps = cam(input_tensor=x, targets=targets)
    return np.asarray(maps, dtype=np.float32)


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor) -> list[int]:
    """Argmax class of each image."""
    model.eval()
    device = next(model.parameters()).device
    return model(images.to(device=device, dtype=torch.float32)).argmax(dim=1).tolist()


def pick_examples(labels: Sequence[int] | np.ndarray | torch.Tensor, grades: Sequence[int] = (1, 2),
                  per_grade: int = 1) -> list[int]:
    """Indices of the first ``per_grade`` images of each grade, in ``grades`` order."""
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    out = []
    for g in grades:
        idx = np.flatnonzero(lab == g)[:per_grade]
        if idx.size < per_grade:
            raise ValueError(f"only {idx.size} images of grade {g}, need {per_grade}")
        out += idx.tolist()
    return out


@dataclass
class CamOverlay:
    """One model's view of one image: column title, GradCAM map (H, W) in [0, 1], prediction."""

    label: str
    cam: np.ndarray
    pred: int


@dataclass
class CamRow:
    """One grid row: the image ((C, H, W) or (H, W, C), uint8 or float in [0, 1]), its true
    grade and one overlay per model column."""

    image: np.ndarray
    true: int
    overlays: list[CamOverlay] = field(default_factory=list)


def build_rows(images: torch.Tensor, labels: Sequence[int], models: Mapping[str, torch.nn.Module],
               target: str = "true", display_images: torch.Tensor | np.ndarray | None = None) -> list[CamRow]:
    """Compute predictions and GradCAM maps of each model for each image.

    Args:
        images: ``(B, C, H, W)`` float model inputs.
        labels: true grades.
        models: column title -> model, in column order.
        target: ``"true"`` explains the true grade, ``"pred"`` the model's own prediction.
        display_images: what to show (e.g. the raw uint8 images); defaults to ``images``.
    """
    labels = [int(x) for x in (labels.tolist() if isinstance(labels, torch.Tensor) else labels)]
    shown = display_images if display_images is not None else images
    shown = shown.detach().cpu().numpy() if isinstance(shown, torch.Tensor) else np.asarray(shown)
    rows = [CamRow(image=shown[i], true=labels[i]) for i in range(len(labels))]
    for title, model in models.items():
        preds = predict(model, images)
        targets = labels if target == "true" else preds
        maps = gradcam_maps(model, images, targets)
        for i, row in enumerate(rows):
            row.overlays.append(CamOverlay(title, maps[i], preds[i]))
    return rows


def to_display_image(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1] from (C, H, W) / (H, W, C) / (H, W), uint8 or float.

    Floats outside [0, 1] (normalised inputs) are min-max scaled for display.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.transpose(img, (1, 2, 0))
    if img.ndim == 2:
        img = img[..., None]
    img = img.astype(np.float32)
    if np.issubdtype(np.asarray(image).dtype, np.integer):
        img = img / 255.0
    elif img.min() < 0 or img.max() > 1:
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return np.clip(img, 0.0, 1.0)


def _upsample(arr: np.ndarray, size: int, mode: str) -> np.ndarray:
    """(H, W) or (H, W, C) -> same at ``size`` x ``size``."""
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    kw = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(t, size=(size, size), mode=mode, **kw)[0]
    out = out[0] if arr.ndim == 2 else out.permute(1, 2, 0)
    return out.clamp(0, 1).numpy()


def gradcam_figure(panels: Sequence[CamRow], out_png: str | os.PathLike, display_px: int = 112,
                   title: str = "GradCAM: cross-entropy vs. Ordinal Loss on adjacent grades",
                   image_mode: str = "nearest", cam_mode: str = "bilinear", noun: str = "grade",
                   note: str = "") -> Path:
    """Draw the comparison grid and write it as PNG.

    Rows are the images (e.g. one of grade 1, one of grade 2); column 1 is the original, then
    one GradCAM overlay (``show_cam_on_image``) per model, titled with the model's label and
    its predicted grade (``noun``: "grade", or "class" for non-ordinal datasets). Images are
    upsampled to ``display_px`` (nearest for the image, bilinear for the map) so 28 px inputs
    stay readable. ``note`` (e.g. how the images were chosen) goes under the title.

    Returns the PNG path.
    """
    if not panels:
        raise ValueError("gradcam_figure needs at least one row")
    n_cols = 1 + max(len(r.overlays) for r in panels)
    fig = Figure(figsize=(2.3 * n_cols, 2.45 * len(panels) + 0.5), dpi=110, layout="constrained")
    axes = np.asarray(fig.subplots(len(panels), n_cols, squeeze=False))
    for i, row in enumerate(panels):
        img = _upsample(to_display_image(row.image), display_px, image_mode)
        ax = axes[i, 0]
        ax.imshow(img, interpolation="nearest")
        ax.set_title(f"original\ntrue {noun} {row.true}", fontsize=9)
        ax.set_ylabel(f"{noun} {row.true}", fontsize=10)
        for j, ov in enumerate(row.overlays, start=1):
            cam = _upsample(np.asarray(ov.cam, dtype=np.float32), display_px, cam_mode)
            overlay = show_cam_on_image(img, cam, use_rgb=True)
            ax = axes[i, j]
            ax.imshow(overlay, interpolation="nearest")
            mark = "✓" if ov.pred == row.true else "✗"
            ax.set_title(f"{ov.label}\ntrue {row.true}, predicted {ov.pred} {mark}", fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
        for j in range(1 + len(row.overlays), n_cols):
            axes[i, j].axis("off")
    sm = ScalarMappable(norm=Normalize(0.0, 1.0), cmap="jet")
    cb = fig.colorbar(sm, ax=axes[:, 1:].ravel().tolist() if n_cols > 1 else axes.ravel().tolist(),
                      shrink=0.8, pad=0.02)
    cb.set_label("GradCAM weight (per image, 0 to max)")
    lines = [title, f"(images upsampled from {np.asarray(to_display_image(panels[0].image)).shape[0]} "
             f"to {display_px} px for display; red = high GradCAM weight)"]
    lines += textwrap.wrap(note, width=int(30 * n_cols))
    fig.suptitle("\n".join(lines), fontsize=10)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png")
    return out_png


def pick_images(labels: np.ndarray | torch.Tensor, grades: Sequence[int], n: int,
                multi_label: bool = False) -> list[int]:
    """``n`` image indices spread in turn over ``grades`` (grade 1, grade 2, grade 1, ...),
    the first images of each grade in file order. Multi-label: images positive for the class."""
    return choose_images(labels, grades, n, multi_label=multi_label).indices


@dataclass(frozen=True)
class ImageChoice:
    """The images of a GradCAM grid and a sentence saying how they were chosen."""

    indices: list[int]
    note: str


def _grade_pools(labels: np.ndarray, grades: Sequence[int], multi_label: bool) -> dict[int, np.ndarray]:
    """Indices of each grade's images in file order (multi-label: images positive for the class)."""
    return {g: np.flatnonzero(labels[:, g] == 1) if multi_label else np.flatnonzero(labels.reshape(-1) == g)
            for g in grades}


def choose_images(labels: np.ndarray | torch.Tensor, grades: Sequence[int], n: int,
                  predictions: np.ndarray | None = None, multi_label: bool = False) -> ImageChoice:
    """``n`` images spread in turn over ``grades``; with ``predictions`` (one row of predicted
    classes per model over the same images), each grade's next image is the first one on which
    the models disagree, else the first whose prediction adds a class not shown yet, else the
    first in file order: a grid where every model predicts grade 0 shows nothing of a loss.

    Raises ValueError (``grades: ...``) when a grade has too few images.
    """
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    pools = _grade_pools(lab, grades, multi_label)
    preds = None if predictions is None else np.asarray(predictions).reshape(-1, len(lab))
    chosen: list[int] = []
    shown: set[int] = set()

    def priority(position: int, i: int) -> tuple:
        if preds is None:
            return (position,)
        column = set(preds[:, i].tolist())
        return (len(column) == 1, column <= shown, position)

    while len(chosen) < n:
        for g in grades[:n - len(chosen)]:
            left = [i for i in pools[g].tolist() if i not in chosen]
            if not left:
                raise ValueError(f"grades: only {len(pools[g])} images of grade {g}, {n} images over "
                                 f"{len(grades)} grade(s) need {-(-n // len(grades))}")
            pick = min(enumerate(left), key=lambda item: priority(*item))[1]
            chosen.append(int(pick))
            shown |= set() if preds is None else set(preds[:, pick].tolist())
    return ImageChoice(chosen, _choice_note(chosen, preds))


def _choice_note(chosen: list[int], preds: np.ndarray | None) -> str:
    """How :func:`choose_images` chose, in one sentence for the figure and its caption."""
    if preds is None:
        return "Images: the first of each grade in file order."
    differ = sum(len(set(preds[:, i].tolist())) > 1 for i in chosen)
    predicted = f"(predicted: {', '.join(map(str, sorted({int(c) for i in chosen for c in preds[:, i]})))})"
    if len(preds) == 1:
        return f"Images: of each grade in turn, one that varies the predicted class where it can {predicted}."
    if differ == len(chosen):
        return f"Images: the first of each grade on which the models' predictions differ ({differ} of {len(chosen)})."
    if differ:
        return (f"Images: {differ} of {len(chosen)} where the models' predictions differ, all found; the others "
                f"vary the predicted class where they can {predicted}.")
    return (f"Images: the models agree on every image of these grades, so the images vary the predicted class "
            f"where they can {predicted}.")


def _checkpoint_folder(path: str | os.PathLike) -> str | Path:
    """The checkpoint folder of a folder or its state.pt; a bucket's (s3://, gs://) as it is,
    fetched when loaded."""
    if local_folder(os.fspath(path)) is None:
        return os.fspath(path).removesuffix("/state.pt")
    p = Path(path)
    if p.is_file() and p.name == "state.pt":
        return p.parent
    if not p.exists():
        raise ValueError(f"checkpoint: {p}: no such folder")
    if not p.is_dir():
        raise ValueError(f"checkpoint: {p}: not a checkpoint folder (it holds state.pt)")
    return p


def _load_models(checkpoints: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike], ordinal_of,
                 device: str) -> tuple[dict[str, torch.nn.Module], object]:
    """Column title -> model (on ``device``) of each checkpoint, and the first one's config; the
    checkpoints must share their data (dataset and image size)."""
    from analysis.evaluate import load_checkpoint
    from medvit.train import resolve_device

    named = list(checkpoints.items()) if isinstance(checkpoints, Mapping) else [(None, c) for c in checkpoints]
    if not named:
        raise ValueError("checkpoint: give at least one checkpoint folder")
    loaded = [(key, *load_checkpoint(_checkpoint_folder(path))) for key, path in named]
    kinds = sorted({(c.dataset, c.img_size) for *_, c in loaded})
    if len(kinds) > 1:
        raise ValueError("checkpoint: the checkpoints were trained on different data ("
                         + ", ".join(f"{d} at {s} px" for d, s in kinds) + "); GradCAM compares them on the same images")
    models: dict[str, torch.nn.Module] = {}
    for key, model, config in loaded:
        name = key if isinstance(key, str) else config.model + (f" (α={config.alpha:g})" if ordinal_of(config) else "")
        while name in models:
            name += "'"
        models[name] = model.to(resolve_device(device))
    return models, loaded[0][2]


def _checked_grades(grades: Sequence[int] | None, info, dataset: str) -> list[int]:
    """The grades to show: given, or 1 and 2 for ordinal datasets (the paper's Figure 4), else every class."""
    from medvit.tasks import ORDINAL

    classes = list(range(info.num_classes))
    grades = list(grades) if grades is not None else ([1, 2] if info.task == ORDINAL else classes)
    if not grades:
        raise ValueError("grades: give at least one grade")
    for g in grades:
        if g not in classes:
            raise ValueError(f"grades: unknown grade {g} for {dataset}; allowed: {classes[0]}..{classes[-1]}")
    return grades


# Images per grade whose predictions are compared when choosing the grid's images: enough to find
# disagreements, few enough that a large test split (ChestMNIST's 22,433) costs one batch.
CANDIDATES_PER_GRADE = 64
PREDICT_BATCH = 128


def _candidate_predictions(models: Mapping[str, torch.nn.Module], images: torch.Tensor, labels: np.ndarray,
                           grades: list[int], multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """The first CANDIDATES_PER_GRADE images of each grade and each model's predictions on them."""
    from medvit.train import normalise

    pools = _grade_pools(labels, grades, multi_label)
    candidates = np.unique(np.concatenate([pool[:CANDIDATES_PER_GRADE] for pool in pools.values()]))
    batches = [normalise(images[candidates[i:i + PREDICT_BATCH]]) for i in range(0, len(candidates), PREDICT_BATCH)]
    preds = [[p for batch in batches for p in predict(model, batch)] for model in models.values()]
    return candidates, np.array(preds).reshape(len(models), len(candidates))


def gradcam_checkpoints(checkpoints: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
                        out_png: str | os.PathLike, images: int = 4, grades: Sequence[int] | None = None,
                        split: str = "test", data_root: str | os.PathLike | None = None,
                        title: str | None = None, device: str = "auto") -> CamFigure:
    """The GradCAM grid of trained checkpoints on ``images`` images of ``split``.

    Args:
        checkpoints: checkpoint folders (``state.pt`` inside; MedViT or ResNet), or column
            title -> folder. All must come from the same dataset and image size.
        out_png: where to write the PNG.
        images: number of images (rows), spread in turn over ``grades``; of each grade the
            first on which the models disagree (:func:`choose_images`), said in the figure.
        grades: grades / classes to show (default 1 and 2 for ordinal datasets, as in the
            paper's Figure 4, else every class).
        split: ``train``, ``val`` or ``test``.
        data_root: folder of the MedMNIST files (default: the run's, else ``$MEDMNIST_ROOT``).
        device: ``auto`` (a GPU when there is one), ``cpu`` or ``cuda``.

    Each panel shows the true and the predicted class; the map explains the true class.

    Raises:
        ValueError: a message starting with the parameter at fault (``checkpoint:``,
            ``images:``, ``grades:``, ``split:``).
    """
    from analysis.reference import display_name
    from medvit.data import dataset_info, load_dataset
    from medvit.tasks import MULTI_LABEL, ORDINAL
    from medvit.train import normalise

    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"images: need at least 1 image, got {images!r}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split: unknown split {split!r}; allowed: train, val, test")
    models, first = _load_models(checkpoints, lambda c: dataset_info(c.dataset).task == ORDINAL, device)
    info = dataset_info(first.dataset)
    grades = _checked_grades(grades, info, first.dataset)
    data = load_dataset(first.dataset, root=data_root or first.data_root, size=first.img_size)
    multi = info.task == MULTI_LABEL
    labels = np.asarray(data.labels[split])
    candidates, preds = _candidate_predictions(models, data.images[split], labels, grades, multi)
    choice = choose_images(labels[candidates], grades, images, preds, multi_label=multi)
    idx = candidates[choice.indices]
    raw = data.images[split][idx]
    shown = [grades[i % len(grades)] for i in range(len(idx))] if multi else labels[idx].reshape(-1).tolist()
    rows = build_rows(normalise(raw), shown, models, display_images=raw)
    what = "grade" if info.task == ORDINAL else "class"
    title = title or (f"GradCAM on {display_name(first.dataset)} {split} images of {what} "
                      f"{', '.join(map(str, grades))} (map explains the true {what})")
    return CamFigure(gradcam_figure(rows, out_png, title=title, noun=what, note=choice.note), choice.note)


@dataclass(frozen=True)
class CamFigure:
    """A written GradCAM grid and the sentence that says how its images were chosen."""

    path: Path
    images_note: str
