"""The names each config option accepts, one tuple per option: the one list that schemas check against and
that nets, tasks and datamodules map to what they build.

Plain tuples and nothing imported: the schemas read this module on the ``--help`` path, before torch.
"""

from __future__ import annotations

# ---- nets ------------------------------------------------------------------------------------------------
# model.net.cell
CELLS = ("lstm", "gru")
# model.net.head_activation (recurrent nets), model.net.activation (classifier)
ACTIVATIONS = ("relu", "gelu", "tanh", "silu", "elu")
# model.net.init of the classifier and the seq2seq net: schemes any recurrent layer can start from
BASIC_INITS = ("default", "xavier_orthogonal")
# model.net.init of the stateful and sequence nets: `oscillators` turns their first layer into a filter bank
INITS = (*BASIC_INITS, "oscillators")
# model.net.pooling (classifier): how the outputs over time become one vector
POOLINGS = ("last", "mean", "attention")
# model.net.norm (classifier head)
NORMS = ("none", "batchnorm", "layernorm")
# model.net.freeze (classifier): the parts that can stop receiving gradients
FREEZE_PARTS = ("lstm", "attention", "head")
# model.net.lstm_input (LSTM-FCN): the LSTM reads the T steps of C channels, or the C channels as steps of T values
LSTM_INPUTS = ("time", "channels")

# ---- tasks -----------------------------------------------------------------------------------------------
# model.loss (seq2seq forecasting)
LOSSES = ("mse", "mae", "quantile")
# model.teacher_forcing.schedule (seq2seq forecasting)
TEACHER_FORCING_SCHEDULES = ("constant", "linear", "inverse_sigmoid")
# model.class_weighting (classification)
CLASS_WEIGHTINGS = ("balanced", "none")

# ---- data ------------------------------------------------------------------------------------------------
# data.target (prices; matched case-insensitively)
PRICE_TARGETS = ("close", "return", "direction")
# data.features.price_scale (prices)
PRICE_SCALES = ("last_close", "none")
# data.features.extras (prices): feature families added to the trend and FFT features
PRICE_EXTRAS = ("returns", "volume")
# data.missing (series)
MISSING_POLICIES = ("error", "ffill", "interpolate")

# data.short_series: a series of a long table too short for context + horizon + hold-out
SHORT_SERIES_POLICIES = ("error", "skip")
# model.scaler (forecaster): each window by its own context | the train segment's statistics per series
FORECAST_SCALERS = ("instance", "train")
# model.base_forecast (forecaster): what the net corrects: nothing | the seasonal-naive forecast
BASE_FORECASTS = ("none", "seasonal_naive")
# model.interval_calibration (forecaster, loss=quantile): the net's own quantiles | widened by split conformal on
# the validation segment, never narrowed | widened or narrowed (two-sided conformalized quantile regression)
INTERVAL_CALIBRATIONS = ("none", "widen", "conformal")

# ---- serving ---------------------------------------------------------------------------------------------
# runtime (lstmlab-eval, lstmlab-stream): the checkpoint's PyTorch model | the graphs lstmlab-export wrote beside it
RUNTIMES = ("torch", "onnx")
