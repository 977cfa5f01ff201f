"""ami-bridge: Asterisk AMI events turned into Telphin extension events."""

__version__ = "0.1.0"
