"""What keeping PostgreSQL's keyword index costs writes (issue 15): a library of N files as
library_scale.py names them, in a fresh database, through the catalog's own calls, timed by
part. The search package is the one on PYTHONPATH (a tree to time), imported before
library_scale (which puts this one on the path):

    PYTHONPATH=TREE python bench/probes/keyword_text_writes.py postgresql+psycopg://USER:PASSWORD@HOST/postgres 10000

- scan: the files added as an index run's scan adds them (texts owed, 1,000 files a commit);
- texts paid: their texts written as an index run writes them, 128 at a time, first by name,
  into a table whose full-text indexes are already there (each text goes into every index);
- renamed: 1% of the files renamed (each its text written again and placed), one commit;
- built again: every text written and the indexes made from the full table (as when a catalog
  made by an older version is opened for writing);
- the sizes of file_text and of each of its indexes.

A database ``keyword_writes_probe`` is made on the server of URL and dropped at the end.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

from search import keyword_index
from search.catalog import Catalog, File, Meta, Metadata, NewFile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from library_scale import CATEGORIES, PUBLISHERS, SUBCATEGORIES, TAG_VOCABULARY, WORDS  # noqa: E402

DATABASE = "keyword_writes_probe"
server, files = make_url(sys.argv[1]), int(sys.argv[2])
admin = create_engine(server, isolation_level="AUTOCOMMIT")
with admin.connect() as connection:
    connection.execute(text(f"DROP DATABASE IF EXISTS {DATABASE}"))
    connection.execute(text(f"CREATE DATABASE {DATABASE}"))
url = server.set(database=DATABASE).render_as_string(hide_password=False)

rng = np.random.default_rng(0)
cat_ids = [(short, name) for name, shorts in CATEGORIES.items() for short in shorts]
new = []
for number in range(files):
    short, category = cat_ids[rng.integers(len(cat_ids))]
    sub = SUBCATEGORIES[rng.integers(len(SUBCATEGORIES))]
    words = " ".join(WORDS[i].title() for i in rng.integers(len(WORDS), size=rng.integers(1, 4)))
    publisher = PUBLISHERS[number % len(PUBLISHERS)]
    root = "/library"
    path = f"{root}/{publisher}/{category}/{short}{sub}/{short}{sub}_{words} {number:07d}_{publisher}.wav"
    tags = tuple(TAG_VOCABULARY[i] for i in rng.integers(len(TAG_VOCABULARY), size=rng.integers(0, 5)))
    description = f"{words.lower()} recorded {WORDS[rng.integers(len(WORDS))]}" if rng.random() < 0.3 else None
    new.append(NewFile(path, root, 1, 0.0, None, Metadata(description=description, tags=tags, ucs_cat_id=f"{short}{sub}",
                                                          ucs_category=short, ucs_subcategory=sub)))

result = {"files": files}
try:
    with Catalog(url) as catalog:
        started = time.perf_counter()
        catalog.owe_texts()
        for first in range(0, files, 1000):
            catalog.add_files(new[first:first + 1000])
            catalog.commit()
        result["scan_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        while catalog.pay_texts(at_most=128):
            catalog.commit()
        catalog.commit()
        catalog.owe_texts(False)
        result["texts_paid_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        for file_id in rng.choice(np.arange(1, files + 1), files // 100, replace=False).tolist():
            record = catalog.file_by_id(file_id)
            catalog.move_file(record, f"{record.folder}/Renamed {record.name}", root=record.root, mtime=1.0)
        catalog.commit()
        result["renamed_1pc_s"] = round(time.perf_counter() - started, 2)
        with catalog.engine.begin() as connection:  # as a catalog whose texts an older version made
            connection.execute(delete(Meta).where(Meta.key == "keyword_text"))
    started = time.perf_counter()
    with Catalog(url) as catalog:
        result["built_again_s"] = round(time.perf_counter() - started, 2)
        assert keyword_index.text_kept(catalog.session)
        assert catalog.session.query(File).count() == files
        sizes = catalog.session.execute(text(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
            "WHERE i.indrelid = 'file_text'::regclass UNION ALL SELECT 'file_text', pg_relation_size('file_text')"))
        result["sizes_mb"] = {name: round(size / 2**20, 1) for name, size in sizes}
finally:
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {DATABASE}"))
    admin.dispose()
print(json.dumps(result))
