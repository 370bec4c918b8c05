"""YAML presets shipped with isonet-pl (``default.yaml``, ``smoke.yaml``)."""
