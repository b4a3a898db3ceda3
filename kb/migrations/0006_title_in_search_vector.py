"""Keyword search also matches the document's title: refill every chunk's search vector, recount."""

from django.db import migrations

REFILL = r"""
UPDATE kb_chunk c SET search_vector =
    setweight(to_tsvector(kb.text_search_config::regconfig,
        regexp_replace(regexp_replace(d.title, '\.[A-Za-z][A-Za-z0-9]{0,4}$', ''), '[_.\-]+', ' ', 'g')), 'C')
    || setweight(to_tsvector(kb.text_search_config::regconfig, coalesce(c.section_path::text, '')), 'B')
    || setweight(to_tsvector(kb.text_search_config::regconfig, c.text), 'A')
FROM kb_document d, kb_knowledgebase kb
WHERE d.id = c.document_id AND kb.id = c.knowledge_base_id AND c.search_vector IS NOT NULL;

DELETE FROM kb_termstat;
INSERT INTO kb_termstat (knowledge_base_id, lexeme, chunks)
SELECT c.knowledge_base_id, lexeme, count(*)
FROM kb_chunk c CROSS JOIN LATERAL unnest(tsvector_to_array(c.search_vector)) AS lexeme
WHERE c.is_live
GROUP BY c.knowledge_base_id, lexeme;
UPDATE kb_knowledgebase kb SET live_chunks = coalesce(d.n, 0), live_lexemes = coalesce(d.total, 0)
FROM kb_knowledgebase k2 LEFT JOIN (
    SELECT knowledge_base_id, count(*) AS n, sum(length(search_vector)) AS total
    FROM kb_chunk WHERE is_live GROUP BY knowledge_base_id
) d ON d.knowledge_base_id = k2.id
WHERE kb.id = k2.id;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("kb", "0005_term_stats"),
    ]

    operations = [migrations.RunSQL(sql=REFILL, reverse_sql=migrations.RunSQL.noop)]
