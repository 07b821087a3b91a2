"""One self-contained HTML document: sections of pictures, tables and notes, with a table of
contents. Inline CSS, system fonts, no scripts, no external files: it reads the same offline,
from a mail attachment or years later.

Text given to :class:`Page` (titles, headings, captions, table cells, notes) is escaped; the
markup of a section (usually an SVG from :mod:`.svg`) is inserted as it is, and
:meth:`Page.render` refuses a document that would load anything from outside itself.
"""

from __future__ import annotations

import html
import numbers
import re
from html.parser import HTMLParser

from ..errors import OutputError
from ._draw import Figure

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f7f7f5; color: #1f1f1f;
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial,
  sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 32px 56px; }
h1 { font-size: 26px; line-height: 1.25; margin: 0 0 6px; }
h2 { font-size: 19px; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 1px solid #deded9; }
a { color: #1f5fa8; }
nav.toc { background: #fff; border: 1px solid #deded9; border-radius: 6px;
  padding: 8px 18px 10px; margin: 16px 0 26px; }
nav.toc strong { font-size: 13px; text-transform: uppercase; letter-spacing: .05em;
  color: #666; }
nav.toc ol { margin: 4px 0 0; padding-left: 22px; columns: 2 18em; column-gap: 32px; }
section { margin: 30px 0; }
figure { margin: 10px 0; background: #fff; border: 1px solid #deded9; border-radius: 6px;
  padding: 14px 16px 12px; overflow-x: auto; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption, p.caption { color: #555; font-size: 13.5px; margin: 8px 0 0; max-width: 88ch; }
table { border-collapse: collapse; background: #fff; font-size: 14px;
  font-variant-numeric: tabular-nums; border: 1px solid #deded9; margin: 10px 0; }
th, td { padding: 4px 12px; border-bottom: 1px solid #ebebe7; text-align: left;
  vertical-align: top; }
th { background: #f0f0ec; font-weight: 600; }
td.num { text-align: right; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace;
  font-size: 13px; }
.note { background: #fff8e0; border-left: 4px solid #d9a400; border-radius: 4px;
  padding: 8px 14px; margin: 14px 0; max-width: 100ch; }
footer { color: #888; font-size: 12px; margin-top: 44px; }
@media print { body { background: #fff; } nav.toc { display: none; }
  figure, table { break-inside: avoid; } }
"""

_URL_ATTRS = {"src", "href", "xlink:href", "srcset", "poster", "data", "action", "formaction",
              "background", "longdesc", "cite", "manifest", "ping"}
_BANNED_TAGS = {"script", "link", "iframe", "object", "embed", "base", "frame", "meta"}
_CSS_URL = re.compile(r"url\(\s*['\"]?\s*(?!#|data:)[^)\s]", re.I)
# A quick scan for anything the parser below could object to; only a document it flags is
# parsed (parsing 2 MB of SVG cells takes half a second).
_SUSPECT = re.compile(
    r"<(?:script|link|iframe|object|embed|base|frame)\b|<meta\b[^>]*http-equiv"
    r"|\b(?:src|href|srcset|poster|data|action|formaction|background|longdesc|cite|manifest"
    r"|ping)\s*=\s*(?![\"']?(?:#|data:))|\son[a-z]+\s*=|url\(\s*['\"]?\s*(?!#|data:)|@import",
    re.I)


class _RefFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._style = False

    def handle_starttag(self, tag, attrs):
        self._style = tag == "style"
        if tag in _BANNED_TAGS and not (tag == "meta" and all(
                k in ("charset", "name", "content") for k, _ in attrs)):
            self.found.append(f"<{tag}>")
        for k, v in attrs:
            v = (v or "").strip()
            if k in _URL_ATTRS and v and not (v.startswith("#") or v.startswith("data:")):
                self.found.append(f'{k}="{v[:60]}"')
            if k == "style" and (_CSS_URL.search(v) or "@import" in v):
                self.found.append(f'style="{v[:60]}"')
            if k.startswith("on"):
                self.found.append(f"{k}=")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        self._style = False

    def handle_data(self, data):
        if self._style and (_CSS_URL.search(data) or "@import" in data):
            self.found.append("url(...) in CSS")


def external_refs(document: str) -> list[str]:
    """What in an HTML/SVG document would load or run something from outside it:
    scripts, links, event handlers, and src/href/url() that are not ``#...`` or ``data:``."""
    finder = _RefFinder()
    finder.feed(document)
    finder.close()
    return finder.found


def _cell(v) -> tuple[str, bool]:
    if isinstance(v, bool) or v is None:
        return ("" if v is None else str(v)), False
    if isinstance(v, numbers.Integral):
        return str(int(v)), True
    if isinstance(v, numbers.Real):
        return format(float(v), ".6g"), True
    return str(v), False


class Page:
    """An HTML report: add sections, tables and notes in reading order, then render."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = str(title)
        self.subtitle = str(subtitle)
        self._items: list[tuple[str, str | None]] = []  # (html, toc heading or None)

    def section(self, heading: str, html_or_svg, caption: str | None = None) -> Page:
        """A headed section holding ``html_or_svg`` (markup, inserted as is, or a Figure)
        and a caption (escaped; a Figure's own caption when none is given)."""
        markup = str(html_or_svg)
        if isinstance(html_or_svg, Figure) and caption is None:
            caption = html_or_svg.caption
        sid = f"s{sum(1 for _, h in self._items if h is not None) + 1}"
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._items.append((f'<section id="{sid}"><h2>{html.escape(str(heading))}</h2>'
                            f"<figure>{markup}{cap}</figure></section>", str(heading)))
        return self

    def table(self, rows, header=None, caption: str | None = None,
              heading: str | None = None) -> Page:
        """A table of ``rows`` (sequences of cells; numbers right-aligned, floats to 6
        significant digits), with an optional header row, caption and section heading."""
        head = ""
        if header is not None:
            head = "<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) \
                + "</tr></thead>"
        body = []
        for row in rows:
            cells = []
            for v in row:
                s, is_num = _cell(v)
                cls = ' class="num"' if is_num else ""
                cells.append(f"<td{cls}>{html.escape(s)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        cap = f'<p class="caption">{html.escape(caption)}</p>' if caption else ""
        markup = f"<table>{head}<tbody>{''.join(body)}</tbody></table>{cap}"
        if heading is None:
            self._items.append((markup, None))
        else:
            sid = f"s{sum(1 for _, h in self._items if h is not None) + 1}"
            self._items.append((f'<section id="{sid}"><h2>{html.escape(heading)}</h2>'
                                f"{markup}</section>", heading))
        return self

    def note(self, text: str) -> Page:
        """A highlighted paragraph of plain text."""
        self._items.append((f'<p class="note">{html.escape(str(text))}</p>', None))
        return self

    def render(self) -> str:
        """The whole document. Raises OutputError if a section's markup refers to anything
        outside the document."""
        toc = [f'<li><a href="#s{i}">{html.escape(h)}</a></li>'
               for i, h in enumerate((h for _, h in self._items if h is not None), 1)]
        nav = (f'<nav class="toc"><strong>Contents</strong><ol>{"".join(toc)}</ol></nav>'
               if toc else "")
        sub = f'<p class="caption">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               '<meta name="viewport" content="width=device-width, initial-scale=1">'
               f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head>"
               f"<body><main><h1>{html.escape(self.title)}</h1>{sub}{nav}"
               + "\n".join(m for m, _ in self._items)
               + "<footer>Made by rnncli. This page is one self-contained file: it loads "
               "nothing from the network and runs no scripts.</footer></main></body></html>\n")
        bad = external_refs(doc) if _SUSPECT.search(doc) else []
        if bad:
            raise OutputError(f"the report would refer to outside files ({', '.join(bad[:3])}); "
                              "expected only inline pictures and #anchors")
        return doc
