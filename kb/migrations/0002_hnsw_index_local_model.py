"""HNSW index for the default local embedding model's dimension (384).

Knowledge bases with other dimensions get theirs on creation (`kb.pipeline.index.vector_indexes`).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("kb", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS chunk_embedding_hnsw_384 ON kb_chunk "
            "USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE embedding_dims = 384",
            reverse_sql="DROP INDEX IF EXISTS chunk_embedding_hnsw_384",
        ),
    ]
