"""Helpers shared by tests and benchmarks that start child processes on the test database."""

from urllib.parse import quote


def current_database_url() -> str:
    """A DATABASE_URL for the database Django is connected to now (e.g. pytest-django's test
    database), so that child processes use the same one instead of the configured one."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{credentials}@{host}:{port}/{quote(db['NAME'], safe='')}"
