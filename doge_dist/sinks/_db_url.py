"""Database URLs for the SQL sink: the installed driver for doge-datagen style URLs, and masking.

Imports SQLAlchemy lazily (inside the functions): ``import doge_dist`` never does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

__all__ = ["normalize_db_url", "masked_url", "mask_password"]

# drivername without a driver -> (SQLAlchemy's default DBAPI module, the one doge-dist's extras
# install, the drivername to use instead when only the latter is importable)
_DEFAULT_DRIVERS = {
    "postgresql": ("psycopg2", "psycopg", "postgresql+psycopg"),
    "mysql": ("MySQLdb", "pymysql", "mysql+pymysql"),
    "mariadb": ("MySQLdb", "pymysql", "mariadb+pymysql"),
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def normalize_db_url(db_url: str, importable: Callable[[str], bool] | None = None) -> str:
    """A doge-datagen style URL with the driver that is installed.

    On SQLAlchemy 2.0 ``postgresql://`` means psycopg2 and ``mysql://`` / ``mariadb://`` mean
    mysqlclient (``MySQLdb``), which doge-dist does not install (its extras install psycopg 3 and
    pymysql). When the default driver is not importable and doge-dist's is, the URL gets
    ``+psycopg`` / ``+pymysql``; any other URL is returned unchanged. ``importable(module_name)``
    defaults to a ``find_spec`` check (nothing is imported).
    """
    from sqlalchemy.engine import make_url

    importable = importable or _importable
    url = make_url(db_url)
    choice = _DEFAULT_DRIVERS.get(url.drivername)
    if choice is None:
        return db_url
    default_module, ours, drivername = choice
    if importable(default_module) or not importable(ours):
        return db_url
    return url.set(drivername=drivername).render_as_string(hide_password=False)


def masked_url(url: str) -> str:
    """``url`` with its password shown as ``***`` (for names, messages and logs)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a parseable URL: say so without echoing anything secret
        return "<unparseable database URL>"


def mask_password(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (if any) replaced by ``***``."""
    from sqlalchemy.engine import make_url

    password = make_url(url).password
    return text.replace(str(password), "***") if password else text
