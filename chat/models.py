"""Chatbots, conversations and messages (see the grounded-chat issue)."""
