"""Prediction of whole tomograms with a trained network, tile by tile with dask."""

from isonet_pl.predict.predictor import predict_block, predict_tomogram

__all__ = ["predict_block", "predict_tomogram"]
