"""The pure call translator: AMI messages in, extension events out."""

from bridge.translate.model import Recording, record_id
from bridge.translate.translator import Emitted, Translator

__all__ = ["Emitted", "Recording", "Translator", "record_id"]
