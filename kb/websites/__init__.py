"""Whole websites as knowledge sources: discovery (sitemap or crawl), sync, and what changed."""
