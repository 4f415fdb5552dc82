"""Matplotlib with a Korean font, so domain names and titles in the project's plots render.

NanumGothic (SIL Open Font License) ships with the koreanize-matplotlib package; it is registered
with matplotlib's font manager and made the default family.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from matplotlib import font_manager, rcParams

logger = logging.getLogger(__name__)


@cache
def use_korean_font() -> bool:
    """Register NanumGothic and make it the default family; False (with a warning) when absent."""
    spec = find_spec("koreanize_matplotlib")
    font = Path(spec.origin).parent / "fonts" / "NanumGothic.ttf" if spec and spec.origin else None
    if font is None or not font.is_file():
        logger.warning("NanumGothic not found (koreanize-matplotlib); Korean text in plots will not render")
        return False
    font_manager.fontManager.addfont(str(font))
    rcParams["font.family"] = font_manager.FontProperties(fname=str(font)).get_name()
    rcParams["axes.unicode_minus"] = False
    return True
