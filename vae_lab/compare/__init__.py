"""Comparing VAEs: the request/result data and runner, metrics, the grid image, dataset evaluation."""
