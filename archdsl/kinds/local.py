"""(being written)"""

from __future__ import annotations

from archdsl.kinds.base import Kind

KINDS: tuple[Kind, ...] = ()
