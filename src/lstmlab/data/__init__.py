"""Data: generators, HDF5 schemas with validation, datasets and datamodules."""
