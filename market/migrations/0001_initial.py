"""BestPrice and SpecialDay, moved from trading with their tables: prices_best keeps its name, and
so does trading_specialday (SpecialDay's Meta names it). Django's state only; the tables were
made by trading's 0001_initial and 0007_special_day, and trading's 0009 drops the models from
its own state once they are here."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('trading', '0008_calendar_check_schedule'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='BestPrice',
                    fields=[
                        ('symbol', models.CharField(max_length=6, primary_key=True, serialize=False, validators=[django.core.validators.RegexValidator('^[0-9A-Z]{6}$', 'A KRX short code is 6 characters, digits or upper-case letters (e.g. 005930).')])),
                        ('price', models.BigIntegerField()),
                        ('prev_close', models.BigIntegerField(blank=True, null=True)),
                        ('upper_limit', models.BigIntegerField(blank=True, null=True)),
                        ('lower_limit', models.BigIntegerField(blank=True, null=True)),
                        ('source', models.CharField(choices=[('WS', 'KIS WebSocket'), ('REST', 'KIS REST')], max_length=4)),
                        ('event_at', models.DateTimeField(help_text='When the trade happened at the exchange.')),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'prices_best',
                        'constraints': [models.CheckConstraint(condition=models.Q(('price__gt', 0)), name='best_price_positive'), models.CheckConstraint(condition=models.Q(('prev_close__isnull', True), ('prev_close__gt', 0), _connector='OR'), name='best_price_prev_close_positive')],
                    },
                ),
                migrations.CreateModel(
                    name='SpecialDay',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('day', models.DateField(help_text='The date, in Seoul. / 날짜', unique=True)),
                        ('closed', models.BooleanField(default=False, help_text='KRX is closed that day. / 휴장일')),
                        ('open_at', models.TimeField(blank=True, help_text="The regular session's open (Seoul), when not 09:00. / 개장 시각", null=True)),
                        ('close_at', models.TimeField(blank=True, help_text="The regular session's close (Seoul), when not 15:30. / 폐장 시각", null=True)),
                        ('note', models.CharField(blank=True, help_text='Why. / 사유', max_length=120)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'trading_specialday',
                        'ordering': ('day',),
                        'constraints': [models.CheckConstraint(condition=models.Q(('closed', False), models.Q(('close_at__isnull', True), ('open_at__isnull', True)), _connector='OR'), name='special_day_closed_has_no_times'), models.CheckConstraint(condition=models.Q(('closed', True), ('open_at__isnull', False), ('close_at__isnull', False), _connector='OR'), name='special_day_open_has_a_time')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
