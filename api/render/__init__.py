"""Renderers of what people read: the SVG trend chart and the HTML report page.

They draw computed objects (models.charts, models.reports) and never compute a figure.
"""
