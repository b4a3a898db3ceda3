"""Test sets per chatbot and evaluation runs over them (issue 10, items 1 and 2).

services.py   cases: create, import (CSV / JSON lines), export, delete, from a reviewed message;
              runs: create, cancel, apply a run's settings to the bot
selectors.py  scoped reads: cases (with the bot's Q&A entries), runs, comparison of two runs
matching.py   offline phrase matching (case, accents, punctuation, numbers)
answering.py  the one door to the answer pipeline, retrieval and the chat model (judge)
runner.py     evaluation of one case and of a whole run
tasks.py      the Celery task that executes a run
"""
