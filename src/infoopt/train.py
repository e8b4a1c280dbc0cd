"""Training one run: from a shared initial state to checkpoints, a history and ``run.json``.

The loop is resumable and deterministic. Every random number of step ``t`` (data order,
augmentation, dropout) is drawn from a seed derived from ``(seed, t)``, and the state a
run resumes from is saved at epoch ends and at every checkpoint. So a run killed at any
moment and restarted ends with the same weights as one that was never interrupted (on the
same device and thread count: parallel reductions round differently at other counts).

While running, everything lives in a state folder (``<out_dir>/.partial/`` unless given; the
``infoopt train`` command keeps it in the result store, :mod:`infoopt.store`, beside the run's
key); the declared outputs (``ckpt/*.pt``, ``history.csv``, ``run.json``) are moved into place
only when the run ends, because Snakemake deletes the outputs of a failed job before retrying it.

:class:`Trainer` is the loop and its measurements; :class:`RunFiles` writes what it saves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from infoopt.atomic import publish, save_torch, write_json, write_table
from infoopt.checkpoint import CheckpointHeader, load_checkpoint, save_checkpoint
from infoopt.data import TrainLoader, eval_batches, holdout_split, load_prepared
from infoopt.labels import progress_label
from infoopt.models import build_model, describe
from infoopt.optim import build_run_optimizer, deployed, parameter_groups
from infoopt.provenance import provenance
from infoopt.records import RunRecord, RunSpec
from infoopt.seeding import derive_seed
from infoopt.stored_runs import result_spec

HISTORY_COLUMNS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "seconds",
]


@dataclass
class ResumeState:
    """Where a run stands: everything besides the weights, the optimizer and the schedule that a
    resumed run needs (saved in ``resume.pt`` as a dict, under ``state``)."""

    step: int
    seconds: float
    # Per-epoch accumulators stay on the device: reading them every step would stall a GPU.
    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def fresh(cls, device: torch.device) -> ResumeState:
        """The state of a run that has not taken a step."""
        return cls(
            step=0,
            seconds=0.0,
            loss_sum=torch.zeros((), device=device),
            correct=torch.zeros((), device=device, dtype=torch.int64),
            seen=0,
        )


@dataclass(frozen=True)
class RunFiles:
    """Where a run's files go, and their writing: the resume state and the checkpoints in the
    state folder while it runs, then the outputs in ``out_dir``."""

    out_dir: Path
    partial: Path

    @property
    def resume(self) -> Path:
        return self.partial / "resume.pt"

    def checkpoint(self, progress: float, final: bool = True) -> Path:
        folder = self.out_dir if final else self.partial
        return folder / "ckpt" / f"{progress_label(progress)}.pt"

    @property
    def history(self) -> Path:
        return self.out_dir / "history.csv"

    @property
    def run_json(self) -> Path:
        return self.out_dir / "run.json"

    def save_resume(self, spec: RunSpec, modules: dict[str, Any], state: ResumeState) -> None:
        """Save what a killed run resumes from: ``modules`` (name -> object with a state_dict)
        and ``state``, under the run's spec."""
        save_torch(
            {"spec": spec.to_dict(), "state": dataclasses.asdict(state)}
            | {name: module.state_dict() for name, module in modules.items()},
            self.resume,
        )

    def load_resume(self, spec: RunSpec, device: torch.device) -> dict[str, Any] | None:
        """The saved resume state of the run ``spec``, or None (a state of another run, or one
        that cannot be read, is removed: the run starts afresh)."""
        if not self.resume.exists():
            return None
        try:
            saved = torch.load(self.resume, map_location=device, weights_only=False)
            ours = result_spec(RunSpec.from_dict(saved["spec"])) == result_spec(spec)
            if ours:
                saved["state"] = ResumeState(**saved["state"])
        except Exception as error:  # an unreadable state is lost progress, not a failed run
            reason = f"cannot be read ({error!r})"
        else:
            if ours:
                return saved
            reason = "belongs to another run"
        print(f"{self.resume} {reason}; starting afresh", file=sys.stderr)
        shutil.rmtree(self.partial)
        return None

    def write_checkpoint(self, header: CheckpointHeader, weights: dict | None) -> None:
        save_checkpoint(
            header.to_dict() | {"state_dict": weights}, self.checkpoint(header.progress, False)
        )

    def publish(self, progresses: list[float], history: pd.DataFrame, record: RunRecord) -> None:
        """Move the checkpoints into place, write the history and ``run.json`` (last: it marks
        the end)."""
        for progress in progresses:
            publish(self.checkpoint(progress, final=False), self.checkpoint(progress))
        write_table(history, self.history)
        write_json(record.to_dict(), self.run_json)


def checkpoint_steps(fractions: list[float], total_steps: int) -> dict[float, int]:
    """The optimizer step at which each progress fraction is saved."""
    return {p: round(p * total_steps) for p in sorted(fractions)}


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at step ``step``: linear warm-up, then cosine."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup_steps) / decay_steps))


def resolve_execution(training: dict, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, channels_last) from the config's ``auto`` settings."""
    on_cuda = device.type == "cuda"
    precision = training.get("precision", "auto")
    dtype = torch.bfloat16 if precision == "bf16" or (precision == "auto" and on_cuda) else None
    channels_last = training.get("channels_last", "auto")
    return dtype, on_cuda if channels_last == "auto" else bool(channels_last)


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def train_step(model, optimizer, scheduler, x, y, amp_dtype, device):
    """One optimizer step; returns the (detached) loss and the number of correct predictions."""
    with autocast(device, amp_dtype):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.detach().float(), (logits.argmax(dim=1) == y).sum()


@torch.no_grad()
def evaluate(model, prepared, split: str, batch_size: int, amp_dtype, device, channels_last: bool):
    """Mean cross-entropy and accuracy (%) on a whole split, in eval mode, without augmentation."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for x, y in eval_batches(prepared, split, batch_size):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(dim=1) == y).sum()
        count += len(y)
    model.train(was_training)
    return loss_sum.item() / count, 100.0 * correct.item() / count


class Trainer:
    """One run: its model, optimizer, schedule and data, the loop and its measurements.

    ``state`` (a :class:`ResumeState`) holds everything besides the weights and the optimizer
    that a resumed run needs; ``files`` writes what the run saves.
    """

    def __init__(
        self,
        spec: RunSpec,
        init_path: str | Path,
        data_path: str | Path,
        out_dir: str | Path,
        device: torch.device,
        state_dir: str | Path | None = None,
    ) -> None:
        self.spec = spec
        out_dir = Path(out_dir)
        self.files = RunFiles(out_dir, Path(state_dir) if state_dir else out_dir / ".partial")
        # A given state folder belongs to the caller (the store removes it once the result is
        # filed: a job killed in between resumes at its end instead of starting afresh).
        self.owns_state = state_dir is None
        self.device = device
        self.training = training = spec.training
        self.amp_dtype, self.channels_last = resolve_execution(training, device)

        self.model = self._initial_model(init_path)
        self.optimizer = build_run_optimizer(spec, self.model)

        self.data = load_prepared(data_path, device)
        holdout = training.get("holdout")
        if holdout is not None:
            # A learning-rate sweep's run (infoopt.sweep): a held-out part of the training set
            # takes the test set's place, so "test" metrics are validation metrics.
            self.data = holdout_split(self.data, holdout["fraction"], holdout["seed"])
        augment = training["augment"]
        self.loader = TrainLoader(
            self.data,
            training["batch_size"],
            spec.seed,
            crop_padding=augment["crop_padding"],
            flip=augment["flip"],
        )
        self.steps_per_epoch = self.loader.steps_per_epoch
        self.total_steps = training["epochs"] * self.steps_per_epoch
        warmup_steps = round(training["warmup_epochs"] * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda t: lr_factor(t, self.total_steps, warmup_steps, training["schedule"]),
        )
        self.saves = checkpoint_steps(training["checkpoints"], self.total_steps)
        self.state = ResumeState.fresh(device)
        self._resume()
        self.started = time.perf_counter() - self.state.seconds

    def _initial_model(self, init_path: str | Path) -> torch.nn.Module:
        """The run's model with the shared initial weights, in the run's memory format."""
        init = load_checkpoint(init_path)
        if CheckpointHeader.from_dict(init).model != self.spec.model:
            raise ValueError(
                f"{init_path} holds a {init['model']} model but the run asks for "
                f"{self.spec.model}; rerun `infoopt init` for this architecture"
            )
        model = build_model(**self.spec.model).to(self.device)
        model.load_state_dict(init["state_dict"])
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _modules(self) -> dict[str, Any]:
        """What a resumed run restores besides its ResumeState."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}

    def _resume(self) -> None:
        saved = self.files.load_resume(self.spec, self.device)
        if saved is None:
            return
        for name, module in self._modules().items():
            module.load_state_dict(saved[name])
        self.state = saved["state"]
        print(f"resuming at step {self.state.step} of {self.total_steps}", file=sys.stderr)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step on the batch (x, y), with this step's seed for dropout."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        torch.manual_seed(derive_seed(self.spec.seed, "step", self.state.step))
        loss, correct = train_step(
            self.model, self.optimizer, self.scheduler, x, y, self.amp_dtype, self.device
        )
        self.state.loss_sum += loss
        self.state.correct += correct
        self.state.seen += len(y)
        self.state.step += 1

    def evaluate_split(self, split: str) -> tuple[float, float]:
        """Mean loss and accuracy (%) of the current weights on ``split``: every measurement
        of the run goes through here."""
        return evaluate(
            self.model,
            self.data,
            split,
            self.training["eval_batch_size"],
            self.amp_dtype,
            self.device,
            self.channels_last,
        )

    def status(self) -> str:
        """``diverged`` once a training loss of the current epoch was NaN or infinite."""
        return "ok" if torch.isfinite(self.state.loss_sum).item() else "diverged"

    def save_resume(self) -> None:
        self.state.seconds = time.perf_counter() - self.started
        self.files.save_resume(self.spec, self._modules(), self.state)

    def write_checkpoint(self, progress: float, status: str) -> None:
        """Measure and save the checkpoint of ``progress`` (only marked, if the run diverged)."""
        metrics: dict[str, float] = {}
        weights = None
        if status == "ok":
            with deployed(self.optimizer):
                for split in ("test", "train"):
                    metrics[f"{split}_loss"], metrics[f"{split}_accuracy"] = self.evaluate_split(
                        split
                    )
                weights = {
                    k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()
                }
        step = self.saves[progress]
        where = {"progress": progress, "step": step, "epoch": step / self.steps_per_epoch}
        header = CheckpointHeader(
            dataset=self.spec.dataset,
            arch=self.spec.arch,
            optimizer=self.spec.optimizer,
            seed=self.spec.seed,
            model=self.spec.model,
            status=status,
            metrics=metrics,
            **where,
        )
        self.files.write_checkpoint(header, weights)
        self.state.checkpoints.append(where | {"status": status} | metrics)

    def end_epoch(self) -> str:
        """Record the finished epoch in the history, reset the accumulators; return the status."""
        state = self.state
        status = self.status()
        test = (math.nan, math.nan)
        if status == "ok":
            with deployed(self.optimizer):
                test = self.evaluate_split("test")
        state.history.append(
            {
                "epoch": state.step // self.steps_per_epoch,
                "step": state.step,
                "lr": self.optimizer.param_groups[0]["lr"],
                "train_loss": state.loss_sum.item() / self.steps_per_epoch,
                "train_accuracy": 100.0 * state.correct.item() / state.seen,
                "test_loss": test[0],
                "test_accuracy": test[1],
                "seconds": time.perf_counter() - self.started,
            }
        )
        state.loss_sum.zero_()
        state.correct.zero_()
        state.seen = 0
        return status

    def run(self) -> str:
        """Train to the end (or to divergence), then publish the outputs; return the status."""
        saved = {record["progress"] for record in self.state.checkpoints}
        due_at = {
            step: [p for p, s in self.saves.items() if s == step] for step in self.saves.values()
        }
        batches = _batches_from(self.loader, self.state.step)
        bar = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            desc=f"{self.spec.arch}/{self.spec.optimizer}/seed{self.spec.seed}",
            mininterval=0.5 if sys.stderr.isatty() else 30,
            file=sys.stderr,
        )
        status = "ok"
        self.model.train()
        while True:
            due = [p for p in due_at.get(self.state.step, []) if p not in saved]
            if due:
                status = self.status()
                for progress in due:
                    self.write_checkpoint(progress, status)
                    saved.add(progress)
                if status != "ok":
                    break
                self.save_resume()
            if self.state.step == self.total_steps:
                break
            self.step(*next(batches))
            bar.update(1)
            if self.state.step % self.steps_per_epoch == 0:
                status = self.end_epoch()
                if status != "ok":
                    break
                epochs = self.state.step // self.steps_per_epoch
                if (
                    epochs % self.training["resume_every_epochs"] == 0
                    and self.state.step not in due_at
                ):
                    self.save_resume()
        bar.close()
        for progress in self.saves:
            if progress not in saved:
                self.write_checkpoint(progress, status)
        self.publish(status)
        return status

    def publish(self, status: str) -> None:
        """Publish the checkpoints, the history and ``run.json``; remove an own state folder."""
        record = RunRecord(
            status=status,
            spec=self.spec,
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            steps_done=self.state.step,
            wall_seconds=time.perf_counter() - self.started,
            checkpoints=self.state.checkpoints,
            model_parameters=describe(self.model),
            parameter_groups=parameter_groups(self.optimizer),
            provenance=provenance(self.device),
        )
        history = pd.DataFrame(self.state.history, columns=HISTORY_COLUMNS)
        self.files.publish(list(self.saves), history, record)
        if self.owns_state:
            shutil.rmtree(self.files.partial)


def train_run(
    spec: RunSpec,
    init_path: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    device: torch.device,
    state_dir: str | Path | None = None,
) -> str:
    """Train the run ``spec``; return its status.

    ``state_dir`` keeps what a killed run resumes from (default ``<out_dir>/.partial``)."""
    return Trainer(spec, init_path, data_path, out_dir, device, state_dir).run()


def _batches_from(loader: TrainLoader, step: int):
    """The training batches from global step ``step`` on, across epoch boundaries."""
    epoch, start = divmod(step, loader.steps_per_epoch)
    while True:
        yield from loader.epoch(epoch, start_step=start)
        epoch, start = epoch + 1, 0
