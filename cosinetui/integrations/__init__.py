"""Callbacks that record a Lightning or Hugging Face Transformers run through ``track()``:
``cosinetui.integrations.lightning`` and ``cosinetui.integrations.transformers`` (each imports
its own package, so neither is needed to use cosinetui)."""
