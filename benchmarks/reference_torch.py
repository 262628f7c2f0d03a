r"""The PyTorch reference of the parity tests, run as fast as PyTorch allows: the baseline.

    python -m benchmarks.reference_torch --data_dir $CIFAR10_DIR --seeds 5
    python -m benchmarks.reference_torch --data_dir $CIFAR10_DIR --seeds 5 --recipe page10
    python -m benchmarks.reference_torch --data_dir $CIFAR10_DIR --seeds 25 --recipe airbench94

The network, optimizer (summed loss, lr inside the velocity), schedule and random draws are
`reference.torch_recipe` (`reference.torch_fast_recipe` with --recipe page10); what this
adds is speed: the training set on the GPU, augmentation
batched there, bf16 autocast, channels_last, cuDNN autotuning, and optionally
`torch.compile`. Timing follows the same DAWNBench rules as `benchmarks.dawnbench` (warm-up
before the clock, preprocessing inside it, evaluation excluded) and the JSON has the same
fields, so the two files compare run for run.

The airbench recipes (--recipe airbench94, airbench94_muon, airbench95, airbench96) run
`reference.torch_airbench.train` as airbench times itself: the clock covers the
whitening filters, training and the final evaluation with test-time augmentation (which
gives test_accuracy), not the per-epoch evaluations (eval_time_s); a few updates on the
real shapes warm up first (compile_time_s). --epochs and --batch_size override the
recipe's (9.9 epochs of 1,024 for airbench94, fractional by default); the summary adds
airbench's mean, standard deviation and one-sided t-test against its target.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import torch
from absl import app, flags

from benchmarks.report import write_report
from benchmarks.runs import define_run_flags, each_seed
from reference import torch_airbench as airbench
from reference import torch_fast_recipe as fast
from reference import torch_recipe as reference
from tf_resnet9.backends.device import cpu_name
from tf_resnet9.config.flags import config_from_flags
from tf_resnet9.data.cifar import load_cifar10
from tf_resnet9.data.splits import balanced_subset
from tf_resnet9.outputs.results import library_versions

CONFIG_FLAGS = define_run_flags("reference_torch")
flags.DEFINE_enum("precision", None, ["float32", "bfloat16"], "Unset: bfloat16 on a GPU.")
flags.DEFINE_boolean("compile", False, "torch.compile the model.")
flags.DEFINE_enum(
    "recipe",
    "page24",
    ["page24", "page10", *airbench.RECIPES],
    "The 24-epoch recipe, Page's faster one, or one of Keller Jordan's airbench recipes.",
)
FLAGS = flags.FLAGS


@dataclasses.dataclass
class Run:
    """One training run of the reference on `device`."""

    device: torch.device
    width: float
    batch_size: int
    epochs: int
    autocast: torch.dtype | None
    compile: bool
    fast: bool = False  # Page's faster recipe (reference.torch_fast_recipe)

    def build(self, seed: int, x_train: np.ndarray):
        """The model and its forward function; the whitening filter (faster recipe) from
        the training images, before the clock as in the package."""
        torch.manual_seed(seed)
        if self.fast:
            filters = fast.whitening_filters(reference.normalise(x_train))
            model = fast.FastResNet9(filters, self.width)
        else:
            model = reference.ResNet9(self.width)
        model = model.to(self.device, memory_format=torch.channels_last)
        forward = torch.compile(model) if self.compile else model
        return model, forward

    def optimizer(self, model):
        parameters = fast.param_groups(model) if self.fast else model.parameters()
        return reference.RecipeSGD(parameters)

    def lr(self, k: int, steps: int) -> float:
        """The learning rate of update k (1-based): the recipe's, interp(k / steps)."""
        if self.fast:
            return fast.lr_at(k, steps, self.epochs)
        return float(np.interp(k / steps, *reference.lr_knots(self.epochs)))

    def step(self, model, forward, optimizer, images, labels, lr):
        (fast if self.fast else reference).set_lr(optimizer, lr, self.batch_size)
        with torch.autocast(self.device.type, self.autocast, enabled=self.autocast is not None):
            logits = forward(images.contiguous(memory_format=torch.channels_last))
        loss = (fast if self.fast else reference).summed_loss(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach() / self.batch_size

    def evaluate(self, model, forward, images, labels) -> float:
        model.eval()
        correct = torch.zeros((), device=self.device)
        with (
            torch.no_grad(),
            torch.autocast(self.device.type, self.autocast, enabled=self.autocast is not None),
        ):
            for start in range(0, len(images), self.batch_size):
                batch = images[start : start + self.batch_size]
                logits = fast.tta_logits(forward, batch) if self.fast else forward(batch)
                correct += (logits.argmax(-1) == labels[start : start + self.batch_size]).sum()
        model.train()
        return correct.item() / len(images)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self, seed: int, train, test) -> dict:
        wall_start = time.perf_counter()
        (x_train, y_train), (x_test, y_test) = train, test
        steps = len(x_train) // self.batch_size
        model, forward = self.build(seed, x_train)
        initial = copy.deepcopy(model.state_dict())

        # Warm-up before the clock: cuDNN autotuning (and torch.compile) on random batches of
        # the real shapes, then the initial weights back and a fresh optimizer.
        compile_start = time.perf_counter()
        warm_optimizer = self.optimizer(model)
        fake = torch.randn(self.batch_size, 3, 32, 32, device=self.device)
        fake_labels = torch.zeros(self.batch_size, dtype=torch.long, device=self.device)
        for _ in range(3):
            self.step(model, forward, warm_optimizer, fake, fake_labels, 0.0)
        self.evaluate(model, forward, fake, fake_labels)
        model.load_state_dict(initial)
        self.sync()
        compile_time = time.perf_counter() - compile_start

        clock_start = time.perf_counter()  # raw arrays in memory: preprocessing is timed
        padded = reference.reflect_pad(reference.normalise(x_train).to(self.device))
        labels = torch.from_numpy(y_train.astype(np.int64)).to(self.device)
        test_images = reference.normalise(x_test).to(self.device)
        test_labels = torch.from_numpy(y_test.astype(np.int64)).to(self.device)
        optimizer = self.optimizer(model)
        ema = fast.EMA(model) if self.fast else None
        generator = torch.Generator().manual_seed(seed)
        eval_time, k, accuracy = 0.0, 0, 0.0
        for _ in range(self.epochs):
            order = torch.randperm(len(x_train), generator=generator)[: steps * self.batch_size]
            order = order.to(self.device).view(steps, self.batch_size)
            draws = reference.Draws(
                *(
                    d.to(self.device).view(steps, -1)
                    for d in reference.draw(order.numel(), generator)
                )
            )
            for s in range(steps):
                k += 1
                step_draws = reference.Draws(*(d[s] for d in draws))
                images = reference.batched_augment(
                    padded[order[s]], step_draws, cutout=not self.fast
                )
                self.step(model, forward, optimizer, images, labels[order[s]], self.lr(k, steps))
                if ema is not None:
                    ema.update(model, s)
            self.sync()
            eval_start = time.perf_counter()
            if ema is None:
                accuracy = self.evaluate(model, forward, test_images, test_labels)
            else:  # the average is evaluated (uncompiled: it is another module)
                accuracy = self.evaluate(ema.model, ema.model, test_images, test_labels)
            eval_time += time.perf_counter() - eval_start
        training_time = time.perf_counter() - clock_start - eval_time
        return {
            "test_accuracy": accuracy,
            "training_time_s": training_time,
            "compile_time_s": compile_time,
            "eval_time_s": eval_time,
            "wall_time_s": time.perf_counter() - wall_start,
            "images_per_s": self.epochs * steps * self.batch_size / training_time,
        }


@dataclasses.dataclass
class AirbenchRun:
    """One run of an airbench recipe (`reference.torch_airbench`) on `device`."""

    recipe: airbench.Recipe
    device: torch.device
    width: float
    epochs: float
    autocast: torch.dtype | None

    def __call__(self, seed: int, train, test) -> dict:
        wall_start = time.perf_counter()
        options = dict(width=self.width, device=self.device, autocast=self.autocast)
        # Warm-up: two updates on the real shapes (cuDNN's autotuning on a GPU).
        batch = self.recipe.batch_size
        few = (train[0][: 2 * batch], train[1][: 2 * batch])
        compile_start = time.perf_counter()
        airbench.train(self.recipe, few, (test[0][:batch], test[1][:batch]), seed, **options)
        compile_time = time.perf_counter() - compile_start
        result = airbench.train(self.recipe, train, test, seed, epochs=self.epochs, **options)
        return {
            "test_accuracy": result["test_accuracy"],
            "test_accuracy_no_tta": result["test_accuracy_no_tta"],
            "training_time_s": result["time_s"],
            "compile_time_s": compile_time,
            "eval_time_s": result["eval_time_s"],
            "wall_time_s": time.perf_counter() - wall_start,
            "images_per_s": result["updates"] * batch / result["time_s"],
            "updates": result["updates"],
        }


def airbench_main(record: dict, versions: dict, precision: str, device) -> None:
    """The airbench recipes: the shared flags validated as the package validates them, the
    epochs and batch size the recipe's unless given."""
    recipe = airbench.RECIPES[FLAGS.recipe]
    config = config_from_flags(CONFIG_FLAGS)  # validates the flags given
    given = {name for name in CONFIG_FLAGS if not FLAGS[name].using_default_value}
    epochs = float(config.epochs) if "epochs" in given else recipe.epochs
    if "batch_size" in given:
        recipe = dataclasses.replace(recipe, batch_size=config.batch_size)
    run = AirbenchRun(
        recipe, device, config.width, epochs, torch.bfloat16 if precision == "bfloat16" else None
    )
    (x_train, y_train), (x_test, y_test) = load_cifar10(FLAGS.data_dir)
    train = balanced_subset(y_train, config.train_limit, config.subset_seed)
    test = balanced_subset(y_test, config.test_limit, config.subset_seed)
    train, test = (x_train[train], y_train[train]), (x_test[test], y_test[test])
    runs = each_seed(lambda seed: run(seed, train, test) | {"device": record, "versions": versions})
    settings = {name: getattr(config, name) for name in CONFIG_FLAGS}
    settings |= {"epochs": epochs, "batch_size": recipe.batch_size, "model": recipe.name}
    settings |= {"precision": precision, "recipe": recipe.name}
    title = f"PyTorch transcription of {recipe.name} on {record['name']}"
    write_report("reference_torch", title, runs, record, settings, FLAGS.out, recipe.target)


def device_record(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"kind": "gpu", "name": torch.cuda.get_device_name(device)}
    return {"kind": "cpu", "name": cpu_name()}


def main(argv):
    del argv
    reference.disable_tf32()
    torch.backends.cudnn.benchmark = True  # autotune convolutions (done in the warm-up)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = FLAGS.precision or ("bfloat16" if device.type == "cuda" else "float32")
    record = device_record(device)
    versions = library_versions() | {"cuda": torch.version.cuda}
    if FLAGS.recipe in airbench.RECIPES:
        return airbench_main(record, versions, precision, device)
    # Validated as the package does; the recipe's defaults (10 epochs for page10).
    config = config_from_flags(CONFIG_FLAGS, recipe=FLAGS.recipe)
    if not float(config.epochs).is_integer():
        raise app.UsageError(f"--epochs {config.epochs}: {FLAGS.recipe} trains whole epochs here.")
    run = Run(
        device,
        config.width,
        config.batch_size,
        int(config.epochs),
        torch.bfloat16 if precision == "bfloat16" else None,
        FLAGS.compile,
        FLAGS.recipe == "page10",
    )
    (x_train, y_train), (x_test, y_test) = load_cifar10(FLAGS.data_dir)
    # The same subsets as `python -m tf_resnet9.train` takes with these flags.
    train = balanced_subset(y_train, config.train_limit, config.subset_seed)
    test = balanced_subset(y_test, config.test_limit, config.subset_seed)
    train, test = (x_train[train], y_train[train]), (x_test[test], y_test[test])
    runs = each_seed(lambda seed: run(seed, train, test) | {"device": record, "versions": versions})
    config = {name: getattr(config, name) for name in CONFIG_FLAGS} | {
        "precision": precision,
        "compile": FLAGS.compile,
        "recipe": FLAGS.recipe,
    }
    write_report(
        "reference_torch", f"PyTorch reference on {record['name']}", runs, record, config, FLAGS.out
    )


if __name__ == "__main__":
    app.run(main)
