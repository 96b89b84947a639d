"""A small concert database the tests generate (Spider's concert_singer, shrunk), with NULLs and floats."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE stadium (
    stadium_id INTEGER PRIMARY KEY,
    name TEXT,
    location TEXT,
    capacity INTEGER,
    average REAL
);
CREATE TABLE singer (
    singer_id INTEGER PRIMARY KEY,
    name TEXT,
    country TEXT,
    age INTEGER,
    is_male TEXT
);
CREATE TABLE concert (
    concert_id INTEGER PRIMARY KEY,
    concert_name TEXT,
    theme TEXT,
    stadium_id INTEGER REFERENCES stadium(stadium_id),
    year TEXT
);
CREATE TABLE singer_in_concert (
    concert_id INTEGER,
    singer_id INTEGER,
    PRIMARY KEY (concert_id, singer_id),
    FOREIGN KEY (concert_id) REFERENCES concert(concert_id),
    FOREIGN KEY (singer_id) REFERENCES singer(singer_id)
);
CREATE TABLE score (
    id INTEGER PRIMARY KEY,
    label TEXT,
    value REAL
);
"""

STADIUMS = [
    (1, "Raith Rovers", "Stark's Park", 10104, 864.5),
    (2, "Ayr United", "Somerset Park", 11998, 1477.0),
    (3, "East Fife", "Bayview Stadium", 2000, 864.5),
    (4, "Queen's Park", "Hampden Park", 52500, None),
    (5, "Stirling Albion", "Forthbank Stadium", 3808, 638.0),
]
SINGERS = [
    (1, "Joe Sharp", "Netherlands", 52, "F"),
    (2, "Timbaland", "United States", 32, "T"),
    (3, "Justin Brown", "France", 29, "T"),
    (4, "Rose White", "France", 41, "F"),
    (5, "John Nizinik", "France", 43, "T"),
    (6, "Tribal King", "France", 25, "T"),
    (7, "Nobody", None, None, None),
]
CONCERTS = [
    (1, "Auditions", "Free choice", 1, "2014"),
    (2, "Super bootcamp", "Free choice 2", 2, "2014"),
    (3, "Home Visits", "Bleeding Love", 2, "2015"),
    (4, "Week 1", "Wide Awake", 3, "2014"),
    (5, "Week 1", "Happy Tonight", 5, "2015"),
    (6, "Week 2", "Party All Night", 4, "2015"),
]
SINGER_IN_CONCERT = [(1, 2), (1, 3), (1, 5), (2, 3), (2, 6), (3, 5), (4, 4), (5, 6), (5, 3), (6, 2)]
SCORES = [(1, "a", 0.1), (2, "a", 0.2), (3, "b", 0.3), (4, "b", None), (5, "c", 1.0), (6, "c", 1.0)]


def make_toy_db(path: str | Path, *, big_rows: int = 0) -> Path:
    """Write the toy database at `path`; `big_rows` adds a table `big(x, s)` with that many rows."""
    path = Path(path)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA)
        conn.executemany("INSERT INTO stadium VALUES (?, ?, ?, ?, ?)", STADIUMS)
        conn.executemany("INSERT INTO singer VALUES (?, ?, ?, ?, ?)", SINGERS)
        conn.executemany("INSERT INTO concert VALUES (?, ?, ?, ?, ?)", CONCERTS)
        conn.executemany("INSERT INTO singer_in_concert VALUES (?, ?)", SINGER_IN_CONCERT)
        conn.executemany("INSERT INTO score VALUES (?, ?, ?)", SCORES)
        if big_rows:
            conn.execute("CREATE TABLE big (x INTEGER, s TEXT)")
            conn.executemany("INSERT INTO big VALUES (?, ?)", ((i, f"value {i}") for i in range(big_rows)))
        conn.commit()
    finally:
        conn.close()
    return path


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
