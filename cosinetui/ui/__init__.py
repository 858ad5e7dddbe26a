"""The terminal dashboard (Textual). The only package that imports textual or plotext.

Entry point: :func:`cosinetui.ui.app.run_dashboard`. Widgets are grouped by screen area
under ``widgets/``; modal screens (the schedule form, confirmations) under ``screens/``.
"""
