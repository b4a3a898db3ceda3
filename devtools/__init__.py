"""Development tooling that runs before (and around) Django: the embedded PostgreSQL and Redis, the
`make run` process runner, and the test session's service start-up.

Nothing here imports the apps (accounts, kb, chat) or Django settings: the runner starts the
servers Django needs before Django is importable.

    paths.py               where a data folder's servers live and their URLs (no process started)
    daemons.py             lock, process identification, stop signals shared by both servers
    postgres.py, redis.py  start / reuse / stop each server
    embedded_services.py   the public API, and `start_unless_configured` for manage.py and pytest
    pytest_plugin.py       starts (and at the end stops) the test session's servers
    runner.py              `make run`: migrate, seed, then web + worker + beat under one supervisor
"""
