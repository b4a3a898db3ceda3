"""Keep a chunk's vector in its row (storage MAIN) rather than in the TOAST table.

pgvector declares its type EXTERNAL: a row over ~2 KB (a 1,200-character chunk's text, its
search vector and a 384-d vector: ~3.9 KB) had the vector moved out of line, so every vector
search read each compared or returned vector through the TOAST index, ~5 buffers per row. With
MAIN the text and search vector (EXTENDED) leave the row first and a 384-d vector (1.5 KB) stays:
an exact search of a 468-chunk knowledge base read 701 buffers instead of 2,329, 1.29 ms instead
of 2.2. At 1M rows, same machine (bench/retrieval.py): vector search p50 of a 5,010-chunk knowledge
base (exact) 41 -> 13 ms, of 50k and 350k ones (HNSW) 19.8 -> 16.3 and 10.9 -> 9.2 ms; the table
grows 4 % (the text moves out instead). Wider vectors (remote models) still move out when they must.

Applies to rows written from now on (new chunks, re-embedded ones); rows already stored keep their
layout until rewritten: `manage.py kb_store_vectors_in_rows` moves them (batched, while serving).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("kb", "0012_version_searchable_at")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE kb_chunk ALTER COLUMN embedding SET STORAGE MAIN",
            reverse_sql="ALTER TABLE kb_chunk ALTER COLUMN embedding SET STORAGE EXTERNAL",
        ),
    ]
