"""Where work runs: the in-process job pool, one runner interface, two runners (see base.py).

- `jobs.py`: `JobRunner`, the process pool for CPU-bound work (training, pocketsphinx), with
  job ids, status and completion callbacks.
- `base.py`: `Runner`, `TaskResult`, `TaskContext`; bytes go by reference.
- `work.py`: the task bodies (transcribe, train), the same code in the bot and on workers.
- `local.py`: `LocalRunner`, bodies in this process.
- `remote.py`: `TaskiqRunner`, bodies on `python -m bot worker` processes through Redis.
- `jobstore.py`: jobs in the database, for `!job` and `!jobs` from any process.
- `client.py`: what services do with a runner (transcribe, train) and results as errors.
"""
