"""Training logs: a CSV file (one row per logged step) and TensorBoard scalars, main process only."""

from __future__ import annotations

import csv
import math
from pathlib import Path

FIELDS = ("step", "samples_seen", "loss", "lr", "grad_norm", "samples_per_s", "elapsed_s")


class Tracker:
    def __init__(self, log_dir: str | Path, *, start_step: int = 0, tensorboard: bool = True, enabled: bool = True):
        self.enabled = enabled
        self.csv_path = Path(log_dir) / "metrics.csv"
        self.writer = None
        if not enabled:
            return
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        if self.csv_path.exists():
            _truncate_after(self.csv_path, start_step)  # rows of steps a resumed run will redo
        new = not self.csv_path.exists()
        self._file = self.csv_path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=FIELDS)
        if new:
            self._csv.writeheader()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(log_dir) / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        self._csv.writerow({k: row.get(k, "") for k in FIELDS})
        self._file.flush()
        if self.writer is not None:
            for key in ("loss", "lr", "grad_norm", "samples_per_s"):
                value = row.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"train/{key}", value, row["step"])

    def log_image(self, tag: str, image, step: int) -> None:
        """``image`` as ``(H, W, 3)`` uint8."""
        if self.enabled and self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self.writer is not None:
            self.writer.close()


def _truncate_after(path: Path, step: int) -> None:
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("step") and int(float(r["step"])) <= step]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in FIELDS} for r in rows)


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.csv`` with numbers parsed."""
    rows = []
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()})
    return rows
