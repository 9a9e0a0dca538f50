from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("picks", "0004_entry_cutoff_time"),
    ]

    operations = [
        migrations.AddField(
            model_name="gatesettings",
            name="routed_seq",
            field=models.BigIntegerField(
                default=0, editable=False,
                help_text="Picks routed so far; a router's account read holds while it stands."),
        ),
    ]
