"""Postings: the inverted index keyword search reads (kb.models.Posting), filled from the live chunks."""

import django.db.models.deletion
from django.db import migrations, models

CREATE = """
CREATE TABLE kb_posting (
    term_id bigint NOT NULL REFERENCES kb_termstat (id) ON DELETE CASCADE,
    chunk_id bigint NOT NULL,
    tf smallint NOT NULL,
    dl smallint NOT NULL,
    -- Index-only scans read a term's chunks with what BM25 needs, without visiting the heap.
    PRIMARY KEY (term_id, chunk_id) INCLUDE (tf, dl)
);
-- Rows come and go with every publish: vacuum often enough to keep the visibility map (and so
-- index-only scans) current.
ALTER TABLE kb_posting SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02);
INSERT INTO kb_posting (term_id, chunk_id, tf, dl)
SELECT s.id, c.id, least(coalesce(array_length(u.positions, 1), 1), 32767), least(length(c.search_vector), 32767)
FROM kb_chunk c
CROSS JOIN LATERAL unnest(c.search_vector) AS u(lexeme, positions, weights)
JOIN kb_termstat s ON s.knowledge_base_id = c.knowledge_base_id AND s.lexeme = u.lexeme
WHERE c.is_live
ORDER BY s.id, c.id;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("kb", "0008_language_and_ocr_pages"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(CREATE, "DROP TABLE kb_posting")],
            state_operations=[
                migrations.CreateModel(
                    name="Posting",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "term", "chunk", blank=True, editable=False, primary_key=True, serialize=False
                            ),
                        ),
                        (
                            "term",
                            models.ForeignKey(
                                db_constraint=False,
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                related_name="+",
                                to="kb.termstat",
                            ),
                        ),
                        (
                            "chunk",
                            models.ForeignKey(
                                db_constraint=False,
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                related_name="+",
                                to="kb.chunk",
                            ),
                        ),
                        ("tf", models.SmallIntegerField()),
                        ("dl", models.SmallIntegerField()),
                    ],
                    options={"db_table": "kb_posting"},
                ),
            ],
        ),
    ]
