"""What mean-field theory predicts for one trial config: its MLP's sigma_w^2 and sigma_b^2 under the
trial's scheme and bias, and the resulting chi1, xi_c, 6 xi_c and phase (`initsweep.theory`).

The theory describes a deep stack of equal hidden layers, so the numbers are those of one layer: the first
hidden-to-hidden layer (the input layer for a one-hidden-layer MLP). Schemes scaled by the fan
(`normal_fan_in`, He, Glorot on equal widths, `critical`) give every hidden layer the same sigma_w^2; a
fixed-scale one (`uniform`, `normal`) gives each layer fan_in x E[W^2], which `layer` says. Dropout is left
out of the theory (it moves the critical line: Schoenholz et al. 2017, section 6), and only MLPs with an
activation the theory knows and a scheme with a data-free variance get a prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from initsweep.catalog.datasets import DATASETS
from initsweep.config import TrialConfig
from initsweep.theory import ACTIVATIONS, MeanField, mean_field, weight_variance

__all__ = ["Prediction", "predict"]


@dataclass(frozen=True)
class Prediction:
    """Theory's numbers for a trial, and the layer (its fans) they assume."""

    mean_field: MeanField
    layer: str
    """`hidden layer 2 (256 -> 128)`: the layer whose fans give sigma_w^2 and sigma_b^2."""

    @property
    def trainable_depth(self) -> float:
        """6 xi_c: about how many layers still train (inf at the edge of chaos)."""
        return self.mean_field.trainable_depth

    def params(self) -> dict[str, str]:
        """For MLflow: `theory.chi1`, `theory.xi_c`, `theory.phase`, ..., as strings."""
        mf = self.mean_field
        values = {
            "weight_variance": f"{mf.weight_variance:.6g}",
            "bias_variance": f"{mf.bias_variance:.6g}",
            "chi1": f"{mf.chi1:.6g}",
            "xi_c": f"{mf.xi_c:.6g}",
            "trainable_depth": f"{self.trainable_depth:.6g}",
            "phase": mf.phase,
            "layer": self.layer,
        }
        return {f"theory.{k}": v for k, v in values.items()}

    def metrics(self) -> dict[str, float]:
        """The finite numbers, as MLflow metrics (so the UI can chart them against the objective)."""
        mf = self.mean_field
        values = {"chi1": mf.chi1, "xi_c": mf.xi_c, "trainable_depth": self.trainable_depth}
        return {f"theory.{k}": v for k, v in values.items() if math.isfinite(v)}


def _input_size(trial: TrialConfig) -> int | None:
    info = DATASETS.get(trial.data.dataset)
    return math.prod(info.input_shape) if info and not info.text else None


def predict(trial: TrialConfig) -> Prediction | None:
    """Theory's prediction for `trial`, or None where it has none (not an MLP, an activation or a scheme
    whose variance theory does not know, your own dataset with one hidden layer)."""
    model = trial.model
    if getattr(model, "name", None) != "mlp" or model.activation not in ACTIVATIONS:
        return None
    hidden = list(model.hidden)
    if len(hidden) >= 2:
        fan_in, fan_out, layer = hidden[0], hidden[1], f"hidden layer 2 ({hidden[0]} -> {hidden[1]})"
    else:
        fan_in = _input_size(trial)
        if fan_in is None:
            return None
        fan_out, layer = hidden[0], f"hidden layer 1 ({fan_in} -> {hidden[0]})"
    scheme, params = trial.row.scheme, trial.row.params
    try:
        sw2 = weight_variance(scheme, params, fan_in, fan_out)
    except ValueError:  # an "auto" left unresolved: no activation to resolve it for
        return None
    default_bias = scheme == "pytorch_default" or trial.init.bias == "default"
    sb2 = 1.0 / (3.0 * fan_in) if default_bias else trial.init.bias_variance  # torch's U(-1/sqrt(fan_in), ...)
    if not math.isfinite(sw2) or sw2 <= 0:  # lsuv (data-dependent), all-zero weights
        return None
    return Prediction(mean_field(model.activation, sw2, sb2), layer)
