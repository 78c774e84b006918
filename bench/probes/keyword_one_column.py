"""Several keywords on PostgreSQL (issue 15): pg_trgm's index of the name and the rest as two
columns (the catalog's ``file_text_trigrams``: "the word anywhere" is two scans a word) against
one index of the two joined by the separator (one condition a word, and GIN reads every word's
trigrams in one scan). The statement is the one ``_postgresql_tiers`` ranks several words with
(the files holding two or more words wanted, their relevance from the name and the rest); it
checks both give the same files and relevance, and prints each's planning + execution time
(``EXPLAIN ANALYZE``) for every third query of library_scale.py's kinds.

A scratch database holding a copy of a catalog's texts and both indexes (the catalog itself
untouched):

    createdb scratch && psql scratch -c "CREATE EXTENSION pg_trgm" \\
      -c "CREATE TABLE file_text (file_id bigint primary key, name text not null, about text not null, rank_key bigint)"
    psql CATALOG -c "\\copy (SELECT file_id, name, about, rank_key FROM file_text ORDER BY rank_key) TO STDOUT" \\
      | psql scratch -c "\\copy file_text FROM STDIN"
    psql scratch -c "CREATE INDEX two ON file_text USING gin (name gin_trgm_ops, about gin_trgm_ops)" \\
      -c "CREATE INDEX one ON file_text USING gin ((name || E'\\x1f' || about) gin_trgm_ops)" \\
      -c "VACUUM ANALYZE file_text"
    python bench/probes/keyword_one_column.py postgresql://USER:PASSWORD@HOST/scratch
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from library_scale import WORDS  # noqa: E402

n = len(WORDS)


def two_columns(word: str) -> str:
    return f"(name LIKE '%{word}%' OR about LIKE '%{word}%')"


def one_column(word: str) -> str:
    return f"((name || E'\\x1f' || about) LIKE '%{word}%')"


def ranked(words: list[str], where: str) -> str:
    relevance = " + ".join(f"(CASE WHEN name LIKE '%{word}%' THEN 2 ELSE 0 END"
                           f" + CASE WHEN about LIKE '%{word}%' THEN 1 ELSE 0 END)" for word in words)
    return (f"SELECT relevance, array_agg(file_id) FROM (SELECT file_id, {relevance} AS relevance FROM file_text "
            f"WHERE {where}) matched GROUP BY relevance")


with psycopg.connect(sys.argv[1], autocommit=True) as connection:
    def milliseconds(statement: str) -> float:
        plan = connection.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement).fetchone()[0][0]
        return plan["Planning Time"] + plan["Execution Time"]

    times = {(kind, form): [] for kind in ("3 words", "OR and NOT") for form in ("two columns", "one column")}
    same = True
    for i in range(0, n, 3):  # the words are library_scale.py's own, never quoted
        three = [WORDS[(i + k * 7) % n] for k in range(3)]
        a, b, c = WORDS[i], WORDS[(i + 3) % n], WORDS[(i + 5) % n]
        kinds = {"3 words": (three, lambda holds: " AND ".join(holds(word) for word in three)),
                 # "a -b, c": the files it matches holding both words wanted
                 "OR and NOT": ([a, c], lambda holds: f"(({holds(a)} AND NOT {holds(b)}) OR {holds(c)}) "
                                                      f"AND {holds(a)} AND {holds(c)}")}
        for kind, (words, where) in kinds.items():
            found = {}
            for form, holds in (("two columns", two_columns), ("one column", one_column)):
                times[kind, form].append(milliseconds(ranked(words, where(holds))))
                found[form] = sorted((relevance, sorted(ids)) for relevance, ids in
                                     connection.execute(ranked(words, where(holds))).fetchall())
            same &= found["two columns"] == found["one column"]
    for (kind, form), values in times.items():
        print(f"{kind:10s} {form:11s} p50 {statistics.median(values):5.1f} ms, max {max(values):5.1f} "
              f"({len(values)} queries)")
    print("same files and relevance:", same)
