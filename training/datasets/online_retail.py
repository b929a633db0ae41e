"""UCI Online Retail (2010-12 → 2011-12): every line item of a UK online gift shop.

Cleaning rules (each one a decision, stated once here):
- item = StockCode, upper-cased (``85123a`` and ``85123A`` are one product);
- only product codes are kept: five digits plus up to two letters. POST, DOT, M, C2, BANK CHARGES, AMAZONFEE,
  CRUK, PADS, gift vouchers and the DCGS… sets are postage, fees, adjustments or vouchers, not demand;
- cancellations (InvoiceNo starting with ``C``) and any line with Quantity <= 0 are dropped: they undo or
  correct sales and must not count as interest;
- lines with UnitPrice <= 0 are dropped (free samples, write-offs, stock corrections);
- the title is the item's most frequent description (trimmed; ties → alphabetically first), because one
  StockCode appears under several spellings; the price is the median UnitPrice of its kept lines;
- the category is the first product noun found in the title (BAG, MUG, CANDLE, ...), else ``OTHER``;
- one kept line = one ``purchase`` interaction with weight 1: a trend is how many orders an item is in, and a
  single wholesale line of thousands of units would otherwise drown every other signal;
- InvoiceDate is UK local time and is read as UTC (the file has no zone; the shift is one hour in summer).

The file is sorted by InvoiceDate, so interactions stream straight from it; items need one extra pass.
"""

from __future__ import annotations

import csv
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterator, NamedTuple

from trail.events import Interaction, ItemMeta

from .base import DatasetError, open_text

__all__ = ["OnlineRetail", "PRODUCT_CODE", "category_of"]

PRODUCT_CODE = re.compile(r"\d{5}[A-Z]{0,2}")
_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
_NOUNS = (
    "BAG", "MUG", "CUP", "CANDLE", "HOLDER", "LANTERN", "LIGHTS", "LIGHT", "SIGN", "CARD", "CARDS", "BOX", "TIN",
    "BOTTLE", "CLOCK", "FRAME", "CUSHION", "BUNTING", "DECORATION", "ORNAMENT", "HEART", "PLATE", "BOWL",
    "TEAPOT", "CAKE", "NAPKINS", "WRAP", "PAPER", "STICKER", "STICKERS", "NOTEBOOK", "PEN", "PENCILS", "DOORMAT",
    "PURSE", "UMBRELLA", "APRON", "GLASS", "JAR", "BASKET", "HOOK", "HANGER", "MAGNET", "KEYRING", "NECKLACE",
    "BRACELET", "EARRINGS", "RING", "BUTTON", "TISSUES", "PLASTERS", "LUNCH", "DOLL", "TOY", "GAME", "PUZZLE",
    "SET", "CHALKBOARD", "MIRROR", "VASE", "CLOTH", "TOWEL",
)


def category_of(title: str) -> str:
    """The first product noun of a title (words scanned from the end, where English puts the head noun)."""
    words = re.findall(r"[A-Z]+", title.upper())
    for word in reversed(words):
        if word in _NOUNS:
            return word.rstrip("S") if word not in ("GLASS", "LIGHTS") else word
    return "OTHER"


class _Line(NamedTuple):  # a tuple: 540,000 of them are built per pass, and a frozen dataclass is 3x slower to build
    invoice: str
    stock_code: str
    description: str
    quantity: int
    ts_ms: int
    unit_price: float
    customer: str | None
    country: str
    row_number: int


@dataclass
class OnlineRetail:
    """Adapter for ``online_retail.csv.gz`` (or an uncompressed ``.csv`` with the same columns)."""

    path: Path
    name: str = "online-retail"

    def items(self) -> Iterator[ItemMeta]:
        descriptions: dict[str, Counter[str]] = defaultdict(Counter)
        prices: dict[str, list[float]] = defaultdict(list)
        countries: dict[str, Counter[str]] = defaultdict(Counter)
        for line in self._kept_lines():
            if line.description:
                descriptions[line.stock_code][line.description] += 1
            prices[line.stock_code].append(line.unit_price)
            countries[line.stock_code][line.country] += 1
        for code in sorted(prices):
            variants = descriptions.get(code) or Counter({code: 1})
            title = min(variants, key=lambda text: (-variants[text], text))
            yield ItemMeta(
                item_id=code,
                title=title,
                category=category_of(title),
                price=round(statistics.median(prices[code]), 4),
                attributes={
                    "top_country": countries[code].most_common(1)[0][0],
                    "description_variants": len(variants),
                },
            )

    def interactions(self) -> Iterator[Interaction]:
        for line in self._kept_lines():
            yield Interaction(
                item_id=line.stock_code,
                ts_ms=line.ts_ms,
                event_type="purchase",
                user_id=line.customer,
                weight=1.0,
                event_id=f"{line.invoice}:{line.row_number}",
            )

    def _kept_lines(self) -> Iterator[_Line]:
        for line in self._lines():
            if (
                line.invoice.startswith("C")
                or line.quantity <= 0
                or line.unit_price <= 0
                or not PRODUCT_CODE.fullmatch(line.stock_code)
            ):
                continue
            yield line

    def _lines(self) -> Iterator[_Line]:
        seconds_of: dict[str, int] = {}  # ~23,000 distinct InvoiceDates in 540,000 lines: parse each once
        with self._open() as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or tuple(h.strip().lstrip("\ufeff") for h in header) != _COLUMNS:
                raise DatasetError(f"{self.path}: expected the Online Retail columns {', '.join(_COLUMNS)}, got {header}")
            for row_number, row in enumerate(reader, start=2):
                if len(row) != len(_COLUMNS):
                    raise DatasetError(f"{self.path}:{row_number}: expected {len(_COLUMNS)} columns, got {len(row)}")
                invoice, code, description, quantity, date, price, customer, country = row
                try:
                    seconds = seconds_of.get(date)
                    if seconds is None:
                        seconds = seconds_of[date] = int(datetime.fromisoformat(date).replace(tzinfo=timezone.utc)
                                                         .timestamp())
                    yield _Line(
                        invoice=invoice.strip(),
                        stock_code=code.strip().upper(),
                        description=" ".join(description.split()),
                        quantity=int(quantity),
                        ts_ms=seconds * 1000,
                        unit_price=float(price),
                        customer=customer.strip().removesuffix(".0") or None,
                        country=country.strip(),
                        row_number=row_number,
                    )
                except ValueError as exc:
                    raise DatasetError(f"{self.path}:{row_number}: {exc}") from None

    def _open(self) -> IO[str]:
        return open_text(self.path, "Online Retail file")
