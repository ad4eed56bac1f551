"""Weight clustering (weight sharing) with tfmot: ``cluster_weights`` -> fine-tune -> ``strip_clustering``.

Each selected kernel ends with at most ``clusters`` distinct values (per output channel with ``per_channel``).
After pruning, clustering keeps the zeros (``preserve_sparsity``, tfmot's sparsity-preserving clustering); the
default turns it on exactly when a prune stage ran before. Depthwise kernels are not clustered (tfmot's
clustering registry lists no weights for DepthwiseConv2D).
"""
from __future__ import annotations

from ..errors import PipelineError
from ..specs.stages import CLUSTER_INITS, ClusterSpec
from .stages import STAGES, Context, Stage, select_layers

#: init name (ClusterSpec.init) -> tfmot CentroidInitialization member
INITS = dict(zip(CLUSTER_INITS, ("KMEANS_PLUS_PLUS", "LINEAR", "DENSITY_BASED", "RANDOM")))


def clusterable(layer) -> bool:
    from .._keras import layers

    return isinstance(layer, (layers.Conv2D, layers.Dense)) and not isinstance(layer, layers.DepthwiseConv2D)


@STAGES.register("cluster", aliases=("clustering",))
class Cluster(Stage):
    """Cluster the selected Conv2D/Dense kernels into ``clusters`` shared values.

    ``init``: centroid initialisation, one of kmeans++ (default), linear, density, random. ``per_channel``:
    ``clusters`` per output channel of Conv2D kernels (matches int8 per-channel quantization; better accuracy).
    ``preserve_sparsity``: keep pruned zeros at zero (default: True when a prune stage ran before, else False).
    """

    name = "cluster"
    spec_class = ClusterSpec
    default_lr = 1e-4
    restore_best = False  # centroids and indices are recomputed each step; keep the final state

    def __init__(self, *args, **params):
        super().__init__(*args, **params)
        self._selected: list[str] = []
        self._preserve: bool | None = self.preserve_sparsity

    def check(self, model, previous) -> None:
        after_prune = any(s.name == "prune" for s in previous)
        if after_prune and self.preserve_sparsity is False:
            raise PipelineError("cluster after prune with preserve_sparsity=False would undo the pruning",
                                hint="drop preserve_sparsity (it defaults to True after prune) or set it to true")
        self._preserve = after_prune if self.preserve_sparsity is None else bool(self.preserve_sparsity)
        select_layers(model, clusterable, self.layers, self.skip, "cluster")

    def apply(self, model, ctx: Context):
        from .._keras import keras, tfmot

        cl = tfmot().clustering.keras
        self._selected = select_layers(model, clusterable, self.layers, self.skip, "cluster")
        chosen = set(self._selected)
        init = getattr(cl.CentroidInitialization, INITS[self.init])
        if self.preserve_sparsity is None:
            self._preserve = "prune" in ctx.done
        kwargs = {"number_of_clusters": self.clusters, "cluster_centroids_init": init}
        if self._preserve or self.per_channel:
            # tfmot's public experimental package is empty in 0.8; the function lives in its ``cluster`` module
            from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster as exp

            wrap_fn = exp.cluster_weights
            kwargs.update(preserve_sparsity=self._preserve, cluster_per_channel=self.per_channel)
        else:
            wrap_fn = cl.cluster_weights

        def wrap(layer):
            return wrap_fn(layer, **kwargs) if layer.name in chosen else layer

        with cl.cluster_scope():
            return keras.models.clone_model(model, clone_function=wrap)

    def finalize(self, model):
        from .._keras import tfmot

        return tfmot().clustering.keras.strip_clustering(model)

    def config(self) -> dict:
        cfg = super().config()
        cfg["preserve_sparsity"] = self.preserve_sparsity if self._preserve is None else self._preserve
        return cfg

    def run(self, model, ctx: Context):
        final, report = super().run(model, ctx)
        report.layers = list(self._selected)
        ctx.clustered_layers, ctx.clusters = list(self._selected), self.clusters
        if self._preserve:
            report.notes.append("sparsity-preserving clustering (zeros kept)")
        return final, report
