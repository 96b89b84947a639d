"""The SQL databases the service may query: an allow-list of names, never a path sent by a client.

Configured with `PRUNEKIT_SQL_DATABASES=name=/path/a.sqlite,other=/path/b.sqlite` and/or
`PRUNEKIT_SQL_DIR=/folder`, where every `*.sqlite` file (also Spider's `<db>/<db>.sqlite` layout) is
allowed under its file stem. Explicit names win over the folder's.
"""

from __future__ import annotations

from pathlib import Path

from prunekit.decoding.errors import InvalidRequestError, NotFoundError

__all__ = ["DatabaseRegistry", "parse_database_list"]


def parse_database_list(spec: str) -> dict[str, Path]:
    """`"a=/x/a.sqlite,b=/y/b.sqlite"` -> {"a": Path(...), ...}; a malformed entry is an error, not skipped."""
    out: dict[str, Path] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        name, sep, path = entry.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InvalidRequestError(f"PRUNEKIT_SQL_DATABASES entries look like name=/path.sqlite, got {entry!r}")
        out[name.strip()] = Path(path.strip()).expanduser()
    return out


class DatabaseRegistry:
    """Name -> SQLite file, built once from the settings; `path(name)` is the only way in."""

    def __init__(self, named: dict[str, Path] | None = None, folder: Path | None = None) -> None:
        found: dict[str, Path] = {}
        if folder is not None and folder.is_dir():
            for path in sorted(folder.glob("*.sqlite")) + sorted(folder.glob("*/*.sqlite")):
                found.setdefault(path.stem, path)
        found.update(named or {})
        self._paths = {name: path.resolve() for name, path in found.items()}

    def names(self) -> list[str]:
        return sorted(self._paths)

    def path(self, name: str | None) -> Path:
        if not name:
            raise InvalidRequestError(
                "prunekit-sql needs a `database`: one of " + (", ".join(self.names()) or "(none configured)")
            )
        if name not in self._paths:
            known = ", ".join(self.names()[:20]) or "none: set PRUNEKIT_SQL_DATABASES or PRUNEKIT_SQL_DIR"
            raise NotFoundError(f"database {name!r} is not on the allow-list (known: {known})")
        path = self._paths[name]
        if not path.is_file():
            raise NotFoundError(f"database {name!r} is configured but its file {path} is missing")
        return path
