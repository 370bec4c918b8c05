"""A local web GUI for the workflow: IsoNet's three pages (Preparation, Refinement,
Prediction), background jobs with live logs, and a slice viewer reading the Zarr copies.

``isonet-pl gui`` calls :func:`serve`; the page talks to :mod:`.server`'s JSON API, which
runs the CLI's own commands as jobs (:mod:`.jobs`) with forms read from the CLI's
definitions (:mod:`.forms`).
"""

from isonet_pl.gui.server import GuiServer, serve

__all__ = ["GuiServer", "serve"]
