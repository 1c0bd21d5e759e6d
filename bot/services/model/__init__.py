"""The chat model: datasets, training in a worker process, a versioned model store, predictions.

The model is trained with scikit-learn: TF-IDF over word 1-2 grams and character 3-grams
(within word boundaries, so typos still match), then multinomial logistic regression. The
reply for a label is the first reply the dataset gives for it (the label itself when it gives
none). Corrections are also kept as an exact-match table, so a corrected message gets the
corrected reply after the next training, whatever the classifier thinks of it.

Owns (each module's docstring tells its part in full):

- datasets/: `parse` (reading and checking rows, the CSV kept) and `store` (`DatasetStore`,
  a namespace's datasets and corrections, kept in its blobs).
- service.py: `ModelService`, what the rest of the bot uses: trainings (as jobs, or as tasks
  on workers), predictions, `!test`, versions and rollbacks, loading the active model;
  shared.py is its side in shared storage (blobs): the manifest's compare-and-swap.
- training_run.py: `train_model`, a training run in a worker process (`DatasetSource`,
  `TrainResult`); the fitting itself is training.py.
- artifact.py: the model file (format 2): `compile_pipeline`, `artifact_bytes`,
  `read_artifact` and `check_compiled`, the worker's check against scikit-learn.
- scorer.py: scoring a message in numpy without scikit-learn: the analyzers, `term_keys`,
  `KnownWords` (the knowledge gate, with typos), `Scorer`, `above_chance` and the loaded model.
- store.py: the versions in a folder: the manifest and its lock, `store_version`, reading a
  version's bytes only when their sha256 matches, loading it (format 1 files too).
- predictions.py and evaluation.py: `Prediction` and `Evaluation`, scoring `!test`'s items
  (also on a worker: `evaluate_model_bytes`), the report and the confusion matrix picture.
- samples.py: the sample datasets' models, trained ahead of time and shipped.
- policy.py: which dataset answers a server's chat.

Offers them to tenancy (one `DatasetStore` and `ModelService` per namespace), the model, chat
and feedback cogs and the task bodies. This file imports nothing, and no module here imports
the package: each names the module it uses. Heavy modules (scikit-learn, numpy, joblib,
matplotlib) are imported inside functions, so importing the service is cheap.
"""
