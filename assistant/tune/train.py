"""``assistant tune run``: a LoRA adapter trained on ``tune data``'s examples.

mlx-lm's own trainer does the work (``mlx_lm.tuner.trainer.train``): the model frozen,
LoRA layers on its last blocks, each example templated with its tools and masked so that
only the assistant's last message is learned (``ChatDataset(mask_prompt=True)``).
Around it this module adds what a laptop user needs: the data checked before the model
loads, a measured estimate of time and memory before the first step, one progress line
(iteration, loss, tokens/s, ETA), checkpoints, Ctrl+C that keeps the last one, and a
``card.json`` that says what the adapter is (its base model, data, iterations, losses).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from assistant.errors import EXIT_INTERRUPTED, UserError

CHECKPOINTS = 5  # saves over a run; Ctrl+C keeps the latest


def run_train(args, settings) -> int:
    from assistant.tune import adapters_dir, data_dir
    from assistant.engine.backends import is_remote

    model_spec = args.model or settings.model
    if is_remote(model_spec):
        raise UserError("training needs the model in this process (it is local-only): "
                        "give a local --model (a model directory or a Hugging Face repo id)")
    for name, value, low in (("--save-every", args.save_every or 1, 1),
                             ("--iters", args.iters, 1), ("--batch-size", args.batch_size, 1),
                             ("--rank", args.rank, 1), ("--layers", args.layers, 1),
                             ("--max-seq-length", args.max_seq_length, 16)):
        if value < low:
            raise UserError(f"{name} must be at least {low}")
    if not 0 < args.learning_rate < 1:
        raise UserError("--learning-rate must be between 0 and 1 (1e-4 is a good start)")
    folder = Path(args.data or data_dir()).expanduser()
    train_rows, valid_rows = read_split(folder, "train"), read_split(folder, "valid",
                                                                     required=False)
    out = adapters_dir() / (args.name or _next_name(adapters_dir()))
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} already holds an adapter: choose another --name")

    from assistant.cli.terminal import download_progress
    from assistant.engine import resolve_model

    with download_progress(model_spec) as shown:
        model_path = resolve_model(model_spec, progress=shown)
    trainer = Trainer(model_path, args, train_rows, valid_rows, out)
    estimate = trainer.estimate()
    print(estimate, file=sys.stderr)
    if not args.yes and sys.stdin.isatty() and sys.stderr.isatty():
        sys.stderr.write("Start training? [Y/n] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("", "y", "yes"):
            print("assistant: nothing trained", file=sys.stderr)
            return 1
    outcome = trainer.train()
    print(outcome, file=sys.stderr)
    print(out)
    return EXIT_INTERRUPTED if trainer.interrupted else 0


def read_split(folder: Path, split: str, *, required: bool = True) -> list[dict]:
    """The examples of ``folder/split.jsonl``; a clear line for each way it is wrong."""
    file = folder / f"{split}.jsonl"
    if not file.is_file():
        if required:
            raise UserError(f"no training data in {folder} ({file.name} is missing): run "
                            "assistant tune data first, or give --data")
        return []
    rows = []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {file}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UserError(f"{file}:{number} is not valid JSON ({exc}); run assistant tune "
                            "data again") from None
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not messages \
                or not isinstance(messages[-1], dict) or messages[-1].get("role") != "assistant":
            raise UserError(f"{file}:{number} is not a chat example (a \"messages\" list "
                            "ending with the assistant's message)")
        rows.append(row)
    if required and not rows:
        raise UserError(f"{file} has no examples: use the app with tools for a while, then "
                        "run assistant tune data")
    return rows


def _next_name(root: Path) -> str:
    n = 1
    while (root / f"tools-{n}").exists():
        n += 1
    return f"tools-{n}"


class Trainer:
    def __init__(self, model_path: Path, args, train_rows: list[dict], valid_rows: list[dict],
                 out: Path):
        import mlx.core as mx
        from mlx_lm import load
        from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
        from mlx_lm.tuner.utils import linear_to_lora_layers

        self.args, self.out, self.model_path = args, out, model_path
        self.counts = {"train": len(train_rows), "valid": len(valid_rows)}
        try:
            self.model, self.tokenizer = load(str(model_path))
        except Exception as exc:
            raise UserError(f"cannot load the model in {model_path}: "
                            f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
        layers = len(self.model.layers)
        if args.layers > layers:
            raise UserError(f"--layers {args.layers} is more than the model's {layers} blocks")
        mx.random.seed(args.seed)
        self.model.freeze()
        self.lora = {"rank": args.rank, "scale": 20.0, "dropout": 0.0}
        linear_to_lora_layers(self.model, args.layers, self.lora)
        if args.adapter:  # carry on from an adapter trained before
            from assistant.engine.adapter import read_adapter

            self.model.load_weights(str(read_adapter(args.adapter).path
                                        / "adapters.safetensors"), strict=False)

        def dataset(rows):
            return CacheDataset(ChatDataset(rows, self.tokenizer, mask_prompt=True))

        self.train_set, self.valid_set = dataset(train_rows), dataset(valid_rows)
        try:
            self.lengths = [len(self.train_set[i][0]) for i in range(len(self.train_set))]
        except Exception as exc:  # the template refused an example
            raise UserError(f"an example cannot be templated for this model ({exc}); run "
                            "assistant tune data again") from None
        self.losses: list[list[float]] = []  # [iteration, train loss]
        self.val_losses: list[list[float]] = []
        self.saved_at = 0
        self.interrupted = False
        self.ui: _Progress | None = None

    # -- before -------------------------------------------------------------------------

    def estimate(self) -> str:
        """Time and memory, measured on one step over the longest example (not applied)."""
        import mlx.core as mx
        import mlx.nn as nn
        from mlx.utils import tree_flatten
        from mlx_lm.tuner.trainer import default_loss, iterate_batches

        longest = max(range(len(self.lengths)), key=self.lengths.__getitem__)
        batch = next(iterate_batches(_Just(self.train_set, longest, self.args.batch_size),
                                     self.args.batch_size, self.args.max_seq_length))
        mx.reset_peak_memory()
        step = nn.value_and_grad(self.model, default_loss)
        started = time.perf_counter()
        (loss, _), grads = step(self.model, *batch)
        mx.eval(loss, grads)
        seconds = time.perf_counter() - started
        self.step_seconds = seconds
        peak = mx.get_peak_memory() / 1e9
        trainable = sum(v.size for _, v in tree_flatten(self.model.trainable_parameters()))
        mean = sum(self.lengths) / len(self.lengths)
        per_step = seconds * min(1.0, mean / max(self.lengths[longest], 1))
        total = per_step * self.args.iters
        from assistant.cli.terminal import counted

        return (f"Training {self.out.name} on {self.model_path.name}: "
                f"{counted(self.counts['train'], 'example')} ({self.counts['valid']} to "
                f"validate), "
                f"{self.args.iters} steps of {self.args.batch_size}, LoRA rank {self.args.rank} "
                f"on the last {self.args.layers} blocks ({trainable:,} weights trained).\n"
                f"About {_duration(total)} and {peak:.2f} GB at most (measured on one step "
                f"of the longest example: {_duration(seconds)}).")

    # -- the run --------------------------------------------------------------------------

    def train(self) -> str:
        import mlx.optimizers as optim
        from mlx_lm.tuner import trainer as mlx_trainer
        from mlx_lm.tuner.trainer import TrainingArgs
        from mlx_lm.utils import save_config

        args = self.args
        self.out.mkdir(parents=True, exist_ok=True)
        save_config({"fine_tune_type": "lora", "num_layers": args.layers,
                     "lora_parameters": self.lora, "model": str(self.model_path),
                     "iters": args.iters, "batch_size": args.batch_size,
                     "learning_rate": args.learning_rate, "max_seq_length": args.max_seq_length,
                     "mask_prompt": True, "seed": args.seed},
                    self.out / "adapter_config.json")
        every = args.save_every or max(1, args.iters // CHECKPOINTS)
        training = TrainingArgs(
            batch_size=args.batch_size, iters=args.iters,
            val_batches=-1 if self.counts["valid"] else 0,
            steps_per_report=max(1, min(10, args.iters // 20)),
            steps_per_eval=max(every, args.iters), steps_per_save=every,
            adapter_file=str(self.out / "adapters.safetensors"),
            max_seq_length=args.max_seq_length)
        optimizer = optim.Adam(learning_rate=args.learning_rate)
        self.ui = _Progress(args.iters, enabled=sys.stderr.isatty())
        started = time.perf_counter()
        try:
            with _our_progress(mlx_trainer, self):
                mlx_trainer.train(model=self.model, optimizer=optimizer,
                                  train_dataset=self.train_set,
                                  val_dataset=self.valid_set if self.counts["valid"] else None,
                                  args=training, training_callback=_Callback(self))
            self.saved_at = args.iters
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self.ui.clear()
        if self.interrupted and not self.saved_at:
            for file in self.out.iterdir():
                file.unlink()
            self.out.rmdir()
            raise UserError(f"stopped at step {self.ui.done} of {args.iters}, before the first "
                            "checkpoint: nothing kept", ) from None
        self._tidy()
        self._write_card(time.perf_counter() - started)
        if self.interrupted:
            return (f"Stopped at step {self.ui.done} of {args.iters}; kept the checkpoint of "
                    f"step {self.saved_at} in {self.out}")
        first, last = self.losses[0][1], self.losses[-1][1]
        return (f"Trained {args.iters} steps: loss {first:.3f} → {last:.3f}. The adapter is in "
                f"{self.out}; try it with assistant ask --adapter {self.out} or measure it "
                "with assistant tune eval")

    def _tidy(self) -> None:
        """Keep one weights file: the last checkpoint is the adapter."""
        for file in self.out.glob("*_adapters.safetensors"):
            file.unlink()

    def _write_card(self, seconds: float) -> None:
        config = self.model_path / "config.json"
        card = {
            "base_model": str(self.model_path),
            "base_config_sha256": hashlib.sha256(config.read_bytes()).hexdigest()
            if config.is_file() else None,
            "examples": self.counts,
            "train_tokens": sum(self.lengths),
            "iterations": self.saved_at,
            "iterations_planned": self.args.iters,
            "interrupted": self.interrupted,
            "losses": self.losses,
            "val_losses": self.val_losses,
            "rank": self.args.rank, "layers": self.args.layers,
            "learning_rate": self.args.learning_rate, "batch_size": self.args.batch_size,
            "seconds": round(seconds, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = self.out / "card.json.tmp"
        tmp.write_text(json.dumps(card, indent=2), encoding="utf-8")
        tmp.replace(self.out / "card.json")


class _Just:
    """One example, repeated to fill a batch: the probe step's data."""

    def __init__(self, dataset, index: int, size: int):
        self.dataset, self.index, self.size = dataset, index, size

    def __getitem__(self, i):
        return self.dataset[self.index]

    def __len__(self):
        return self.size


class _Callback:
    """mlx-lm's training callback: losses for the card."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def on_train_loss_report(self, info: dict) -> None:
        self.trainer.losses.append([info["iteration"], round(info["train_loss"], 4)])
        self.trainer.ui.report(info["iteration"], info["train_loss"], info["tokens_per_second"])

    def on_val_loss_report(self, info: dict) -> None:
        self.trainer.val_losses.append([info["iteration"], round(info["val_loss"], 4)])


class _Progress:
    """One line on stderr: step, loss, tokens/s, ETA (a line per report without a tty)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.done, self.loss, self.tps, self.last_saved = 0, None, None, 0
        self.started = time.perf_counter()

    def step(self) -> None:
        self.done += 1
        self.show()

    def report(self, iteration: int, loss: float, tps: float) -> None:
        self.loss, self.tps = loss, tps
        if not self.enabled:
            print(f"step {iteration}/{self.total}  loss {loss:.3f}  {tps:,.0f} tok/s",
                  file=sys.stderr, flush=True)
        self.show()

    def saved(self, step: int) -> None:
        self.last_saved = step
        if not self.enabled:
            print(f"checkpoint at step {step}", file=sys.stderr, flush=True)
        self.show()

    def show(self) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else math.nan
        width = 24
        filled = int(width * self.done / self.total)
        parts = [f"[{'█' * filled}{'·' * (width - filled)}] {self.done}/{self.total}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        if self.tps is not None:
            parts.append(f"{self.tps:,.0f} tok/s")
        if not math.isnan(left):
            parts.append(f"ETA {_duration(left)}")
        if self.last_saved:
            parts.append(f"saved at {self.last_saved}")
        sys.stderr.write("\r\x1b[2K" + "  ".join(parts))
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


class _UI:
    """Stands in for mlx-lm's rich progress display (``TrainUI``), which would print
    its own table to stdout: the same calls, drawn as our one progress line."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def __call__(self, total_iters: int, rank: int = 0) -> _UI:
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self) -> None:
        self.trainer.ui.step()

    def report_train(self, *args) -> None:
        pass  # the callback has the same figures

    @contextmanager
    def val_task(self, total: int):
        yield lambda: None

    def report_val(self, *args) -> None:
        pass

    def report_save(self, checkpoint) -> None:
        self.trainer.saved_at = self.trainer.ui.done
        self.trainer.ui.saved(self.trainer.saved_at)


@contextmanager
def _our_progress(module, trainer: Trainer):
    original = module.TrainUI
    module.TrainUI = _UI(trainer)
    try:
        yield
    finally:
        module.TrainUI = original


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
