"""Moved: the SVG chart is a renderer, not a wire schema; it lives in api/render/chart.py and
draws a models.charts.Chart. This module re-exports its names so older imports still work."""

from api.render.chart import SVG_MEDIA_TYPE, render_chart
from models.charts import ChartPoint

__all__ = ["SVG_MEDIA_TYPE", "ChartPoint", "render_chart"]
