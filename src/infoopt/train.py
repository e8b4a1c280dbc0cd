"""Training one run: from a shared initial state to checkpoints, a history and ``run.json``.

The loop is resumable and deterministic. Every random number of step ``t`` (data order,
augmentation, dropout) is drawn from a seed derived from ``(seed, t)``, and the state a
run resumes from is saved at epoch ends and at every checkpoint. So a run killed at any
moment and restarted ends with the same weights as one that was never interrupted.

While running, everything lives in ``<out_dir>/.partial/``; the declared outputs
(``ckpt/*.pt``, ``history.csv``, ``run.json``) are moved into place only when the run
ends, because Snakemake deletes the outputs of a failed job before retrying it.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from infoopt.atomic import publish, save_torch, write_json, write_table
from infoopt.checkpoint import load_checkpoint, progress_label, save_checkpoint
from infoopt.data import TrainLoader, eval_batches, load_prepared
from infoopt.models import build_model
from infoopt.optim import build_optimizer
from infoopt.provenance import provenance
from infoopt.seeding import derive_seed

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


@dataclass(frozen=True)
class RunPaths:
    out_dir: Path

    @property
    def partial(self) -> Path:
        return self.out_dir / ".partial"

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


def train_run(
    spec: dict[str, Any],
    init_path: Path,
    data_path: Path,
    out_dir: Path,
    device: torch.device,
) -> str:
    """Train the run described by ``spec`` (see ``infoopt.config.run_spec``); return its status."""
    paths = RunPaths(Path(out_dir))
    training = spec["training"]
    seed = spec["seed"]
    amp_dtype, channels_last = resolve_execution(training, device)

    init = load_checkpoint(init_path)
    if init["model"] != spec["model"]:
        raise ValueError(
            f"{init_path} holds a {init['model']} model but the run asks for {spec['model']}; "
            "rerun `infoopt init` for this architecture"
        )
    model = build_model(**spec["model"]).to(device)
    model.load_state_dict(init["state_dict"])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(spec["algorithm"], model.parameters(), **spec["hparams"])

    prepared = load_prepared(data_path, device)
    augment = training["augment"]
    loader = TrainLoader(
        prepared,
        training["batch_size"],
        seed,
        crop_padding=augment["crop_padding"],
        flip=augment["flip"],
    )
    total_steps = training["epochs"] * loader.steps_per_epoch
    warmup_steps = round(training["warmup_epochs"] * loader.steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: lr_factor(t, total_steps, warmup_steps, training["schedule"])
    )
    saves = checkpoint_steps(training["checkpoints"], total_steps)

    pending = {step: [p for p, s in saves.items() if s == step] for step in saves.values()}
    state = _fresh_state(device)
    if paths.resume.exists():
        resumed = torch.load(paths.resume, map_location=device, weights_only=False)
        if resumed["spec"] == spec:
            model.load_state_dict(resumed["model"])
            optimizer.load_state_dict(resumed["optimizer"])
            scheduler.load_state_dict(resumed["scheduler"])
            state = resumed["progress"]
            print(f"resuming at step {state['step']} of {total_steps}", file=sys.stderr)
        else:
            print(
                f"{paths.resume} belongs to another configuration; starting afresh", file=sys.stderr
            )
            shutil.rmtree(paths.partial)

    def save_resume() -> None:
        state["seconds"] = time.perf_counter() - started
        save_torch(
            {
                "spec": spec,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "progress": state,
            },
            paths.resume,
        )

    def save_checkpoint_at(progress: float, status: str) -> None:
        metrics: dict[str, float | None] = {}
        if status == "ok":
            for split in ("test", "train"):
                loss, accuracy = evaluate(
                    model,
                    prepared,
                    split,
                    training["eval_batch_size"],
                    amp_dtype,
                    device,
                    channels_last,
                )
                metrics[f"{split}_loss"] = loss
                metrics[f"{split}_accuracy"] = accuracy
        record = {
            "progress": progress,
            "step": saves[progress],
            "epoch": saves[progress] / loader.steps_per_epoch,
            "status": status,
            **metrics,
        }
        weights = None
        if status == "ok":
            weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_checkpoint(
            {
                **{key: spec[key] for key in ("dataset", "arch", "optimizer", "seed", "model")},
                "status": status,
                "progress": progress,
                "step": record["step"],
                "epoch": record["epoch"],
                "state_dict": weights,
                "metrics": metrics,
            },
            paths.checkpoint(progress, final=False),
        )
        state["checkpoints"].append(record)

    started = time.perf_counter() - state["seconds"]
    bar = tqdm(
        total=total_steps,
        initial=state["step"],
        desc=f"{spec['arch']}/{spec['optimizer']}/seed{seed}",
        mininterval=0.5 if sys.stderr.isatty() else 30,
        file=sys.stderr,
    )
    batches = _batches_from(loader, state["step"])
    status = "ok"
    model.train()
    while True:
        step = state["step"]
        due = [p for p in pending.get(step, []) if p not in _saved(state)]
        if due:
            status = _status(state)
            for progress in due:
                save_checkpoint_at(progress, status)
            if status != "ok":
                break
            save_resume()
        if step == total_steps:
            break
        x, y = next(batches)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        torch.manual_seed(derive_seed(seed, "step", step))
        loss, correct = train_step(model, optimizer, scheduler, x, y, amp_dtype, device)
        state["loss_sum"] += loss
        state["correct"] += correct
        state["seen"] += len(y)
        state["step"] += 1
        bar.update(1)
        if state["step"] % loader.steps_per_epoch == 0:
            status = _end_epoch(
                state,
                loader.steps_per_epoch,
                optimizer,
                started,
                lambda: evaluate(
                    model,
                    prepared,
                    "test",
                    training["eval_batch_size"],
                    amp_dtype,
                    device,
                    channels_last,
                ),
            )
            if status != "ok":
                break
            epochs_done = state["step"] // loader.steps_per_epoch
            if epochs_done % training["resume_every_epochs"] == 0 and state["step"] not in pending:
                save_resume()
    bar.close()

    for progress in saves:
        if progress not in _saved(state):
            save_checkpoint_at(progress, status)
    _finish(
        paths,
        spec,
        state,
        saves,
        status,
        total_steps,
        loader.steps_per_epoch,
        device,
        time.perf_counter() - started,
    )
    return status


def _fresh_state(device: torch.device) -> dict[str, Any]:
    return {
        "step": 0,
        "seconds": 0.0,
        # Per-epoch accumulators stay on the device: reading them every step would stall a GPU.
        "loss_sum": torch.zeros((), device=device),
        "correct": torch.zeros((), device=device, dtype=torch.int64),
        "seen": 0,
        "history": [],
        "checkpoints": [],
    }


def _batches_from(loader: TrainLoader, step: int):
    """The training batches from global step ``step`` on, across epoch boundaries."""
    epoch, start = divmod(step, loader.steps_per_epoch)
    while True:
        yield from loader.epoch(epoch, start_step=start)
        epoch, start = epoch + 1, 0


def _saved(state: dict) -> set[float]:
    return {record["progress"] for record in state["checkpoints"]}


def _status(state: dict) -> str:
    """``diverged`` once a training loss of the current epoch was NaN or infinite."""
    return "ok" if torch.isfinite(state["loss_sum"]).item() else "diverged"


def _end_epoch(state, steps_per_epoch, optimizer, started, evaluate_test) -> str:
    """Append the finished epoch to the history and reset the accumulators; return the status."""
    status = _status(state)
    test_loss, test_accuracy = evaluate_test() if status == "ok" else (math.nan, math.nan)
    state["history"].append(
        {
            "epoch": state["step"] // steps_per_epoch,
            "step": state["step"],
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": state["loss_sum"].item() / steps_per_epoch,
            "train_accuracy": 100.0 * state["correct"].item() / state["seen"],
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "seconds": time.perf_counter() - started,
        }
    )
    state["loss_sum"].zero_()
    state["correct"].zero_()
    state["seen"] = 0
    return status


def _finish(
    paths, spec, state, saves, status, total_steps, steps_per_epoch, device, seconds
) -> None:
    """Publish the checkpoints, the history and ``run.json`` (last: it marks the end)."""
    for progress in saves:
        publish(paths.checkpoint(progress, final=False), paths.checkpoint(progress))
    write_table(pd.DataFrame(state["history"], columns=HISTORY_COLUMNS), paths.history)
    write_json(
        {
            "status": status,
            "spec": spec,
            "total_steps": total_steps,
            "steps_per_epoch": steps_per_epoch,
            "steps_done": state["step"],
            "wall_seconds": seconds,
            "checkpoints": state["checkpoints"],
            "provenance": provenance(device),
        },
        paths.run_json,
    )
    shutil.rmtree(paths.partial)
