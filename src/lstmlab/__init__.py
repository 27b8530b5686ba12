"""lstmlab: Hydra-composed experiments for LSTM sequence models."""

__version__ = "0.1.0"
