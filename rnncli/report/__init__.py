"""Pictures for an offline HTML report: SVG heatmaps, line plots, stacked bars and
histograms from plain numpy arrays, and a Page that puts them into one self-contained
HTML file. Numpy only; nothing here knows rnncli's models or results."""

from ._draw import Figure
from .page import Page, external_refs
from .svg import heatmap, histogram, line_plot, stacked_bars

__all__ = ["Figure", "Page", "external_refs", "heatmap", "histogram", "line_plot",
           "stacked_bars"]
