"""Knowledge distillation (Hinton et al., 2015, https://arxiv.org/abs/1503.02531) with hooks.

``Distiller`` is a keras.Model whose ``train_step`` mixes the student's loss on the labels with the KL divergence
between temperature-softened teacher and student outputs: ``alpha * student_loss + (1 - alpha) * T^2 * KL``.
Models ending in softmax are handled (log-probabilities are logits up to a constant). The loss functions and
callbacks are hooks a caller can replace from Python. At the end the student is a plain Keras model.

The teacher is a model object, a trained model file, or a zoo name. A zoo-name teacher starts untrained (a
fresh, random teacher teaches nothing), so it needs ``teacher_epochs`` >= 1: it is then trained first on the same
training split the student uses (same seed), and its accuracy is reported next to the student's.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import EdgekitError, PipelineError
from ..specs.stages import DistillSpec
from .stages import Context, STAGES, Stage, StageReport
from .. import models


def _distiller_class():
    from .._keras import keras, tf

    none = keras.losses.Reduction.NONE

    def per_example(loss_fn):
        """A Keras loss object as one returning per-sample losses (replicas average them themselves)."""
        if isinstance(loss_fn, keras.losses.Loss) and loss_fn.reduction not in (none, keras.losses.Reduction.SUM):
            try:
                return type(loss_fn).from_config({**loss_fn.get_config(), "reduction": none})
            except (TypeError, ValueError):  # a custom Loss without a round-tripping config: used as given
                return loss_fn
        return loss_fn

    def replica_mean(value):
        """Per-sample (or already averaged) loss -> this replica's share of the global mean."""
        if value.shape.rank:
            value = tf.reduce_mean(tf.reshape(value, [tf.shape(value)[0], -1]), axis=-1)
            return tf.nn.compute_average_loss(value)
        return value / tf.distribute.get_strategy().num_replicas_in_sync

    class Distiller(keras.Model):
        """Trains ``student`` against ``teacher`` (frozen); ``call`` runs the student. Works under any
        tf.distribute strategy: losses are per-sample, averaged over the global batch."""

        def __init__(self, student, teacher, *, temperature: float = 4.0, alpha: float = 0.1,
                     student_loss: Callable | None = None, distill_loss: Callable | None = None,
                     student_logits: bool = False, teacher_logits: bool = False):
            super().__init__(name=f"distill_{student.name}")
            self.student, self.teacher = student, teacher
            self.teacher.trainable = False
            self.temperature, self.alpha = float(temperature), float(alpha)
            self.student_loss_fn = per_example(student_loss or keras.losses.SparseCategoricalCrossentropy(
                from_logits=student_logits, reduction=none))
            self.distill_loss_fn = per_example(distill_loss or keras.losses.KLDivergence(reduction=none))
            self._s_logits, self._t_logits = student_logits, teacher_logits
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.student_tracker = keras.metrics.Mean(name="student_loss")
            self.distill_tracker = keras.metrics.Mean(name="distill_loss")
            self.acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

        @property
        def metrics(self):
            return [self.loss_tracker, self.student_tracker, self.distill_tracker, self.acc]

        def _soft(self, out, is_logits):
            logits = out if is_logits else tf.math.log(tf.clip_by_value(out, 1e-7, 1.0))
            return tf.nn.softmax(logits / self.temperature, axis=-1)

        def call(self, x, training=False):
            return self.student(x, training=training)

        def train_step(self, data):
            x, y = data
            t_out = self.teacher(x, training=False)
            n = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
            with tf.GradientTape() as tape:
                s_out = self.student(x, training=True)
                s_loss = replica_mean(self.student_loss_fn(y, s_out))
                d_loss = replica_mean(self.distill_loss_fn(self._soft(t_out, self._t_logits),
                                                           self._soft(s_out, self._s_logits)))
                d_loss = d_loss * (self.temperature ** 2)
                loss = self.alpha * s_loss + (1.0 - self.alpha) * d_loss
                if self.student.losses:
                    loss = loss + tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
            grads = tape.gradient(loss, self.student.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables))
            self.loss_tracker.update_state(loss * n)  # trackers show global means, not a replica's share
            self.student_tracker.update_state(s_loss * n)
            self.distill_tracker.update_state(d_loss * n)
            self.acc.update_state(y, s_out)
            return {m.name: m.result() for m in self.metrics}

        def test_step(self, data):
            x, y = data
            s_out = self.student(x, training=False)
            s_loss = tf.reduce_mean(self.student_loss_fn(y, s_out))
            self.loss_tracker.update_state(s_loss)
            self.student_tracker.update_state(s_loss)
            self.acc.update_state(y, s_out)
            return {m.name: m.result() for m in (self.loss_tracker, self.acc)}

    return Distiller


def Distiller(student, teacher, **kwargs):  # noqa: N802 - a class factory (keeps TensorFlow out of imports)
    """Build a ``Distiller`` keras.Model (see the module docstring); arguments as the class takes them."""
    return _distiller_class()(student, teacher, **kwargs)


@STAGES.register("distill", aliases=("distillation", "kd"))
class Distill(Stage):
    """Distil ``teacher`` into the pipeline's model (the student).

    ``teacher``: a keras.Model, a trained model file (.keras/.h5/SavedModel) or a zoo name (built with
    ``teacher_options`` plus the student's resolution, input channels and classes, then trained for
    ``teacher_epochs`` on the same data; required, since an untrained teacher is useless). ``temperature`` and
    ``alpha`` (weight of the label loss) as in Hinton et al.; hooks: ``student_loss(y, student_out)``,
    ``distill_loss(teacher_soft, student_soft)`` and extra keras ``callbacks``. A teacher file whose layers run
    Python code (Lambda & co) is refused unless ``trust_model_code`` (the pipeline's ``trust_model_code`` sets it);
    a Keras 3 teacher file is translated to tf-keras.
    """

    name = "distill"
    spec_class = DistillSpec
    default_lr = 1e-3

    def __init__(self, *args, **params):
        super().__init__(*args, **params)
        self.teacher_report = None

    def config(self) -> dict:
        cfg = super().config()
        if not isinstance(self.teacher, (str, os.PathLike)):
            cfg["teacher"] = getattr(self.teacher, "name", type(self.teacher).__name__)
        return cfg

    def _teacher_kind(self) -> str:
        if isinstance(self.teacher, (str, os.PathLike)):
            return "file" if Path(self.teacher).exists() else "zoo"
        return "model"

    def check(self, model, previous) -> None:
        for stage in previous:
            if stage.name in ("prune", "cluster"):
                raise PipelineError(f"distill after {stage.name} retrains every weight and loses the "
                                    f"{'sparsity' if stage.name == 'prune' else 'clusters'}",
                                    hint="put distill first: distill, then prune/cluster, then qat/export")
        kind = self._teacher_kind()
        if kind == "file":   # before any training: a teacher file that would run code is refused now

            models.check_model_file(self.teacher, trust_model_code=self.trust_model_code)
        if kind == "zoo":
            name = str(self.teacher)
            if any(sep in name for sep in ("/", "\\")) or Path(name).suffix in (".keras", ".h5"):
                raise PipelineError(f"distill: teacher file {name!r} does not exist")
            try:
                models.info(name)
            except EdgekitError as exc:   # UnknownNameError (its hint is the did-you-mean)
                raise PipelineError(f"distill: {exc.message}", hint=exc.hint) from None
            if self.teacher_epochs < 1 and (self.teacher_options or {}).get("weights") in (None, "none"):
                raise PipelineError(f"distill: teacher {name!r} from the zoo starts untrained and would teach noise",
                                    hint="set teacher_epochs (e.g. 3) to train it first on the same data, or pass "
                                         "a trained teacher file")
        elif kind == "model":
            from .._keras import keras

            if not isinstance(self.teacher, keras.Model):
                raise PipelineError(f"distill: teacher must be a zoo name, a model file or a keras.Model; received "
                                    f"{type(self.teacher).__name__}")
        if self.teacher_options and kind != "zoo":
            raise PipelineError("distill: teacher_options apply to a zoo-name teacher only")

    def build_teacher(self, student, ctx: Context):
        """The trained teacher: loaded, given, or built from the zoo and trained for ``teacher_epochs``."""
        from .train import compile_for_training, evaluate, fit, input_shape_of, set_bn_momentum

        kind = self._teacher_kind()
        if kind == "model":
            teacher = self.teacher
        elif kind == "file":
            teacher = models.resolve(str(self.teacher), tf_keras=True, trust_model_code=self.trust_model_code)
        else:
            h, _, c = input_shape_of(student)
            opts = {"resolution": h, "input_channels": c, "classes": int(student.output_shape[-1]),
                    "weights": "none", **(self.teacher_options or {})}
            teacher = models.create(str(self.teacher), **opts)
        if tuple(teacher.input_shape[1:]) != tuple(student.input_shape[1:]):
            raise PipelineError(f"distill: teacher input {teacher.input_shape[1:]} differs from the student's "
                                f"{student.input_shape[1:]}")
        if int(teacher.output_shape[-1]) != int(student.output_shape[-1]):
            raise PipelineError(f"distill: teacher has {teacher.output_shape[-1]} outputs, the student "
                                f"{student.output_shape[-1]}")
        log = []
        if self.teacher_epochs:
            set_bn_momentum(teacher, ctx.bn_momentum)
            scoped = ctx.dist.to_scope(teacher)
            with ctx.dist.scope():
                compile_for_training(scoped, self.teacher_lr, self.optimizer)
            log, _ = fit(scoped, ctx.train, ctx.val, epochs=self.teacher_epochs,
                         batch_size=self.batch_size or ctx.batch_size, task=f"train teacher {teacher.name}",
                         shadow=teacher, **ctx.fit_kwargs(ctx.part("distill-teacher")))
            ctx.dist.copy_back(teacher, scoped)
        chief = ctx.dist.chief  # accuracies are for the report, which only the chief writes
        self.teacher_report = {"name": teacher.name, "source": kind, "epochs_trained": self.teacher_epochs,
                               "params": int(teacher.count_params()),
                               "val_accuracy": evaluate(teacher, ctx.val) if chief else None,
                               "test_accuracy": evaluate(teacher, ctx.test) if chief else None, "history": log}
        return teacher

    def fit(self, model, ctx: Context):
        return []  # training happens in run(): the Distiller wraps student and teacher

    def run(self, model, ctx: Context):
        import time

        from .._keras import tf
        from .train import fit, input_specs, make_optimizer, outputs_probabilities

        t0 = time.perf_counter()
        teacher = self.build_teacher(model, ctx)
        with ctx.dist.scope():
            distiller = Distiller(ctx.dist.to_scope(model), ctx.dist.to_scope(teacher), temperature=self.temperature,
                                  alpha=self.alpha, student_loss=self.student_loss, distill_loss=self.distill_loss,
                                  student_logits=not outputs_probabilities(model),
                                  teacher_logits=not outputs_probabilities(teacher))
            zeros = [tf.zeros((1, *shape)) for shape in input_specs(model)[0]]
            distiller(zeros[0] if len(zeros) == 1 else zeros)  # built before fit: BackupAndRestore can restore it
            distiller.compile(optimizer=make_optimizer(self.optimizer, self.lr or self.default_lr))
        log, best = fit(distiller, ctx.train, ctx.val, epochs=self.epochs, batch_size=self.batch_size or ctx.batch_size,
                        task="distill", callbacks=[*self.callbacks, *ctx.callbacks],
                        from_logits=not outputs_probabilities(model), eval_model=distiller.student, shadow=model,
                        **ctx.fit_kwargs(ctx.part("distill")))
        student = ctx.dist.copy_back(model, distiller.student)

        report = StageReport(stage=self.name, params=self.config(), history=log)
        if best is not None and best.resumed_from:
            report.notes.append(f"resumed after epoch {best.resumed_from} (backup in --backup-dir)")
        report.notes.append(f"teacher {self.teacher_report['name']} ({self.teacher_report['source']}, "
                            f"{self.teacher_report['params']:,} params, trained {self.teacher_epochs} epochs here; "
                            f"val acc {_pct(self.teacher_report['val_accuracy'])}, "
                            f"test acc {_pct(self.teacher_report['test_accuracy'])})")
        report.params["teacher_report"] = self.teacher_report
        report.seconds = round(time.perf_counter() - t0, 2)
        return student, report


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"
