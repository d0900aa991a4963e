"""lm-eval's task index (~15 s of CPU to build) is built once per (include_path, include_defaults)
for every test of this package: `kanana eval`'s and `kanana train`'s evaluation section's checks."""
import functools

import pytest


@pytest.fixture(scope="session", autouse=True)
def one_task_index():
    import lm_eval.tasks

    real = lm_eval.tasks.TaskManager
    cached = functools.lru_cache(maxsize=None)(
        lambda include_path, include_defaults: real(include_path=include_path, include_defaults=include_defaults))
    lm_eval.tasks.TaskManager = lambda include_path=None, include_defaults=True: cached(
        tuple(include_path) if isinstance(include_path, list) else include_path, include_defaults)
    yield
    lm_eval.tasks.TaskManager = real
