"""The random-forest filter of the paper (Sec. 4, filter 1): clip metrics -> keep or drop.

A saved filter is a joblib pickle of a small dict (format tag, version, feature names, threshold,
training summary, the scikit-learn model). Pickles run code when loaded: load only filter files you
trained yourself, never one downloaded from elsewhere.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dataset_tools.clip_metrics import FEATURES, metrics_vector

FILTER_FORMAT = "puppet-master/rf-filter"
FILTER_VERSION = 1
DEFAULT_TREES = 200


class FilterError(ValueError):
    """A filter file or training set that cannot be used."""


def train_filter(
    metrics: Sequence[dict[str, float]],
    labels: Sequence[int],
    *,
    seed: int = 0,
    n_estimators: int = DEFAULT_TREES,
    threshold: float = 0.5,
) -> dict:
    """Fit a random forest on per-clip metrics with labels 1 (keep) / 0 (drop)."""
    from sklearn.ensemble import RandomForestClassifier

    if len(metrics) != len(labels):
        raise FilterError(f"{len(metrics)} metric rows but {len(labels)} labels")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) < 2 or len(np.unique(y)) < 2:
        raise FilterError(
            f"training needs clips of both labels (keep and drop); got {int(y.sum())} keep, {int((y == 0).sum())} drop"
        )
    x = np.stack([metrics_vector(m) for m in metrics])
    use_oob = len(y) >= 10
    model = RandomForestClassifier(
        n_estimators=n_estimators,
        random_state=seed,
        class_weight="balanced",
        oob_score=use_oob,
        min_samples_leaf=1,
        n_jobs=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # OOB on tiny sets warns about unseen samples
        model.fit(x, y)
    import sklearn

    return {
        "format": FILTER_FORMAT,
        "version": FILTER_VERSION,
        "features": list(FEATURES),
        "threshold": float(threshold),
        "sklearn_version": sklearn.__version__,
        "train": {
            "clips": len(y),
            "keep": int(y.sum()),
            "drop": int((y == 0).sum()),
            "oob_accuracy": float(model.oob_score_) if use_oob else None,
            "seed": seed,
            "n_estimators": n_estimators,
        },
        "model": model,
    }


def save_filter(path: str | Path, bundle: dict) -> Path:
    import joblib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    joblib.dump(bundle, tmp)
    tmp.replace(path)
    return path


def load_filter(path: str | Path) -> dict:
    """Load a filter saved by ``save_filter`` (a local file you made: it is a pickle)."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise FilterError(f"{path}: filter file missing")
    try:
        bundle = joblib.load(path)
    except Exception as exc:
        raise FilterError(f"{path}: cannot be read as a saved filter ({exc})") from exc
    if not isinstance(bundle, dict) or bundle.get("format") != FILTER_FORMAT:
        raise FilterError(f"{path}: not a puppet-master random-forest filter")
    if bundle.get("version") != FILTER_VERSION:
        raise FilterError(f"{path}: filter version {bundle.get('version')} (this code reads {FILTER_VERSION})")
    if tuple(bundle.get("features", ())) != FEATURES:
        raise FilterError(f"{path}: the filter was trained on other features; retrain it with this version")
    return bundle


def keep_probability(bundle: dict, metrics: Sequence[dict[str, float]]) -> np.ndarray:
    """The forest's probability that each clip is worth keeping."""
    if not metrics:
        return np.zeros(0)
    x = np.stack([metrics_vector(m) for m in metrics])
    model = bundle["model"]
    proba = model.predict_proba(x)
    return proba[:, list(model.classes_).index(1)]


def write_metrics_csv(path: str | Path, rows: Sequence[tuple[str, dict[str, float]]], extra: Sequence[str] = ()) -> None:
    """One row per clip: ``clip_id``, every feature, then ``extra`` columns present in the dicts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip_id", *FEATURES, *extra])
        for clip_id, values in rows:
            writer.writerow([clip_id, *(f"{values[k]:.9g}" for k in FEATURES), *(values[k] for k in extra)])
    tmp.replace(path)


def read_metrics_csv(path: str | Path) -> dict[str, dict[str, float]]:
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [k for k in ("clip_id", *FEATURES) if k not in (reader.fieldnames or [])]
        if missing:
            raise FilterError(f"{path}: columns {missing} are missing")
        return {row["clip_id"]: {k: float(row[k]) for k in FEATURES} for row in reader}
