"""TRAIL's core domain: event schemas, trend signals, prompts and explanations. No I/O, no stage imports."""

from .events import EVENT_TYPES, LIMITS, Interaction, InvalidEvent, ItemMeta, Limits, parse_interaction, parse_item_meta

__all__ = ["EVENT_TYPES", "LIMITS", "Interaction", "InvalidEvent", "ItemMeta", "Limits", "parse_interaction",
           "parse_item_meta"]
