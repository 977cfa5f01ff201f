"""The pure call translator: AMI messages in, extension events out."""

from bridge.translate.translator import Emitted, Translator

__all__ = ["Emitted", "Translator"]
