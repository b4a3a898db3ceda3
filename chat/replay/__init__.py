"""Replay: the last real questions of a knowledge base's bots, answered from live and from draft."""
