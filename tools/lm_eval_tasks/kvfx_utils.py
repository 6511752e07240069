"""Hooks for the kvfx_* fixture tasks: the harness's own functions, re-exported so the
reference is lm-eval itself, not a copy of it."""
from lm_eval.tasks.okapi.arc_multilingual.utils import process_docs as arc_process_docs  # noqa: F401
from lm_eval.tasks.wikitext.preprocess_wikitext import (  # noqa: F401
    process_results as wikitext_process_results,
    wikitext_detokenizer,
)
