"""Datasets: the rows a chat model is trained on, and the corrections users make to its replies.

Owns: `parse` (reading CSV, JSON and typed lines into `Row`s, with checks whose errors name the
line; the name rules; the CSV kept) and `store` (`DatasetStore`: a namespace's datasets and
corrections, in its folder kept a cache of its blobs). Imports nothing of the model above it.
"""
