from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("kb", "0011_precise_ranking"),
    ]

    operations = [
        migrations.AddField(
            model_name="documentversion",
            name="searchable_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When search first found its chunks: at READY, or earlier by keyword while a long new "
                "document is still embedding.",
                null=True,
            ),
        ),
        # Versions that went live before this field existed were searchable from when they finished.
        migrations.RunSQL(
            "UPDATE kb_documentversion SET searchable_at = finished_at WHERE status = 'ready'",
            migrations.RunSQL.noop,
        ),
    ]
