"""Everything that speaks AMI: the pure framer/parser and the live connection."""
