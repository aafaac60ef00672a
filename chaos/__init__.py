"""The chaos harness: a Django app (its flows) plus ``run.py`` (the harness itself).

``make chaos`` (or ``python chaos/run.py``) runs it; see run.py's docstring.
"""
