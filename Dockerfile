# One image for every Aegis process (web, worker, beat, flower, listener, pricesync, migrate);
# docker-compose.yml picks the process with `command:`.
FROM python:3.11-slim-bookworm

ENV DJANGO_SETTINGS_MODULE=aegis.settings PYTHONUNBUFFERED=1

WORKDIR /app

# Fixed uid/gid so files on mounted volumes have a predictable owner.
RUN groupadd --system --gid 10001 aegis \
    && useradd --system --uid 10001 --gid aegis --create-home --shell /usr/sbin/nologin aegis

# Requirements first: the dependency layer stays cached while only the code changes.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

# Collect with the production storage (whitenoise's manifest), so the manifest that production
# looks up exists; without it every {% static %} in the admin fails. The values below are
# placeholders that only let production settings load: collectstatic opens no database or Redis
# connection, and none of them persists into the image.
RUN AEGIS_ENV=production \
    SECRET_KEY=build-time-placeholder-only-for-collectstatic-never-used-at-runtime \
    DATABASE_URL=postgres://build@127.0.0.1:1/build \
    REDIS_URL=redis://127.0.0.1:1/0 \
    python manage.py collectstatic --noinput

# Code and static files stay root-owned: the app never needs to write them.
USER aegis

EXPOSE 8000
CMD ["gunicorn", "aegis.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--access-logfile", "-"]
