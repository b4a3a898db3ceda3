"""The knowledge-gap inbox per chatbot (issue 10, item 4): the questions the bot keeps failing, as
a to-do list.

models.py      KnowledgeGap (a group, open → answered | out_of_scope | dismissed),
               KnowledgeGapQuestion (one failed answer), GapScan (where grouping left off)
clustering.py  the grouping rule: greedy leader clustering of question embeddings (cosine ≥ 0.75)
services.py    gaps_refresh (group new refused / thumbs-down answers), and the actions: write the
               answer (Q&A entry + test cases), out of scope (must-refuse cases), dismiss
selectors.py   ranked open groups, a group's questions with what retrieval found, dashboard counts
api.py         GET /api/v1/chatbots/{id}/gaps/, GET /api/v1/gaps/{id}/, POST …/answer/,
               …/out-of-scope/, …/dismiss/
views.py       the staff "Gaps" page per bot
tasks.py       the periodic refresh (`chat.gaps_refresh`, CELERY_BEAT_SCHEDULE)
"""
