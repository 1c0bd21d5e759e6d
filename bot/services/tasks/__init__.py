"""Where work runs: the in-process job pool, one runner interface, two runners (see base.py).

- `jobs.py`: `JobRunner`, the process pool for CPU-bound work (training, pocketsphinx), with
  job ids, status and completion callbacks.
- `base.py`: `Runner`, `TaskResult`, `TaskContext`; bytes go by reference.
- `work.py`: the task bodies (transcribe, train, evaluate), the same code in the bot and on
  workers.
- `local.py`: `LocalRunner`, the default: bodies in this process.
- `remote.py`: `TaskiqRunner`, with TASK_BROKER_URL: bodies on `python -m bot worker`
  processes through Redis.
- `jobstore.py`: jobs in the database, for `!job` and `!jobs` from any process.
- `client.py`: a failed task's result raised again as the error it was.

Services always call the bot's runner (wiring.py picks it) and never ask which it is.
"""
