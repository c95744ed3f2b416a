"""The executor's steps, in the order every operation passes them.

resolve → authorize → compile → seal → route → cache → run → hooks → open → hydrate.
Each module is one step: a few functions over the ``Runtime`` and the step's own inputs.
No step imports the executor or ``Database``; none calls back up.
"""
