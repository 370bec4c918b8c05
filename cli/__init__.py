"""The ``isonet-pl`` command line (installed as ``isonet_pl.cli``)."""
