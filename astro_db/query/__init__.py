"""What callers may ask of the server, checked and compiled into stored form.

    filters.py    compile_filter, compile_sort, compile_projection, find_options, coerce_id
    updates.py    compile_update: $set $unset $inc $push $pull $addToSet, paths into lists
    walker.py     the one traversal of a filter, update or pipeline, every rule at every node
    pipeline.py   Checks (the walker's first rule: what callers may send), compile_pipeline
    regex.py      the regex policy every regex-taking operator passes
    evaluate.py   apply_update / matches: an update's post-image computed locally
"""

from __future__ import annotations

from .filters import (
    MAX_REGEX_LENGTH,
    check_document_keys,
    coerce_id,
    compile_filter,
    compile_projection,
    compile_sort,
    find_options,
)
from .pipeline import compile_pipeline
from .updates import CompiledUpdate, compile_update

__all__ = [
    "compile_filter", "compile_sort", "compile_projection", "find_options", "coerce_id", "check_document_keys",
    "MAX_REGEX_LENGTH", "compile_update", "CompiledUpdate", "compile_pipeline",
]
