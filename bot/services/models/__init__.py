"""The chat model: training in a worker process, a versioned model store, and predictions.

The model is trained with scikit-learn: TF-IDF over word 1-2 grams and character 3-grams
(within word boundaries, so typos still match), then multinomial logistic regression. The
reply for a label is the first reply the dataset gives for it (the label itself when it gives
none). Corrections are also kept as an exact-match table, so a corrected message gets the
corrected reply after the next training, whatever the classifier thinks of it.

Where things are (each module's docstring tells its part in full):

- service.py: `ModelService`, what the rest of the bot uses: trainings (as jobs, or as tasks
  on workers), predictions, `!test`, versions and rollbacks, loading the active model, and
  the compare-and-swap of the manifest in shared storage (blobs).
- training_run.py: `train_model`, a training run in a worker process (`DatasetSource`,
  `TrainResult`); the fitting itself is bot/services/training.py.
- artifact.py: the model file (format 2): `compile_pipeline`, `artifact_bytes`,
  `read_artifact` and `check_compiled`, the worker's check against scikit-learn.
- scorer.py: scoring a message in numpy without scikit-learn: the analyzers, `term_keys`,
  `KnownWords` (the knowledge gate, with typos), `Scorer`, `above_chance` and the loaded model.
- store.py: the versions in a folder: the manifest and its lock, `store_version`, reading a
  version's bytes only when their sha256 matches, loading it (format 1 files too).
- predictions.py: `Prediction` and `Evaluation`, and scoring `!test`'s items (also on a
  worker: `evaluate_model_bytes`).

Imports go one way, each module using only those left of it: scorer <- artifact <- store <-
predictions, training_run <- service; nothing imports the service. Heavy modules
(scikit-learn, numpy, joblib, matplotlib) are imported inside functions, so importing this
package is cheap.
"""

from bot.services.models.artifact import MODEL_FORMAT, compile_pipeline, read_artifact
from bot.services.models.predictions import Evaluation, Prediction, evaluate_model_bytes
from bot.services.models.scorer import (
    MAX_TYPO_LOOKUPS,
    MIN_KNOWN_SHARE,
    KnownWords,
    Scorer,
    above_chance,
)
from bot.services.models.service import ModelService, NoModelError
from bot.services.models.store import (
    MANIFEST_NAME,
    ModelIntegrityError,
    ModelVersion,
    store_version,
)
from bot.services.models.training_run import DatasetSource, TrainResult, train_model

__all__ = [
    "MANIFEST_NAME",
    "MAX_TYPO_LOOKUPS",
    "MIN_KNOWN_SHARE",
    "MODEL_FORMAT",
    "DatasetSource",
    "Evaluation",
    "KnownWords",
    "ModelIntegrityError",
    "ModelService",
    "ModelVersion",
    "NoModelError",
    "Prediction",
    "Scorer",
    "TrainResult",
    "above_chance",
    "compile_pipeline",
    "evaluate_model_bytes",
    "read_artifact",
    "store_version",
    "train_model",
]
