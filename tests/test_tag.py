"""`clapdex tag`: UCS suggestions and tags for real audio in real catalogs (SQLite and PostgreSQL),
incremental; categories without a UCS list, subcategories with one (a small list in UCS's format
written here, its subcategories made up for the tests); rename plans exported, applied (never
overwriting) and undone, the catalog re-pointed without embedding again; suggested categories in
filters."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from libraries import MADE_UP_LIST, index_into, searching, write_list
from postgres import fresh_database
from sounds import esc10_clips, sox_tone
from test_cli import clapdex

from indexer.tagging import DESCRIPTORS, tag_library
from search import ucs
from search.config import load_settings
from search.filters import Filters
from search.library import Library

BACKENDS = ["sqlite", "postgresql"]
CATEGORY_SHORTS = {forms[0] for forms in ucs.CATEGORIES.values()}
def make_library(folder: Path) -> dict[str, Path]:
    """Two ESC-10 recordings and two tones, one of them already UCS-named."""
    folder.mkdir(parents=True)
    files = {}
    for number, clip in enumerate(esc10_clips(2)):
        files[f"esc{number}"] = folder / clip.name
        shutil.copyfile(clip, files[f"esc{number}"])
    files["tone"] = sox_tone(folder / "low hum.wav", 3, tone="sine 120")
    files["ucs"] = sox_tone(folder / "DOORWood_Creaky door_CLPX_Test.wav", 2, tone="square 180")
    return files


def settings_for(tmp_path: Path, backend: str, weights: Path, ucs_list: Path | None = None):
    catalog = fresh_database() if backend == "postgresql" else None
    return load_settings(tmp_path / "home", catalog=catalog, weights=str(weights), device="cpu",
                         ucs_list=str(ucs_list) if ucs_list else None)


def assert_suggested(found: dict, records: dict, labels: set[str]) -> None:
    for name, suggestions in ((name, found[record.id]) for name, record in records.items()):
        cat_ids = [cat_id for cat_id, _ in suggestions.ucs]
        confidences = [confidence for _, confidence in suggestions.ucs]
        assert len(cat_ids) == 3 and set(cat_ids) <= labels, name
        assert confidences == sorted(confidences, reverse=True) and 0 < sum(confidences) <= 1 + 1e-6
        assert set(suggestions.tags) == set(DESCRIPTORS)
        assert all(tag in DESCRIPTORS[group] for group, (tag, _) in suggestions.tags.items())


@pytest.mark.parametrize("backend", BACKENDS)
def test_categories_without_a_list_subcategories_with_one_each_tagged_once(tmp_path, backend, tiny_weights,
                                                                           tiny_encoder):
    files = make_library(tmp_path / "library")
    settings = settings_for(tmp_path, backend, tiny_weights)
    index_into(settings, [tmp_path / "library"], encoder=tiny_encoder)

    with Library(settings, encoder=tiny_encoder) as library:
        first = tag_library(library)
        again = tag_library(library)
        catalog = library.catalog
        records = {Path(record.path).name: record for record in catalog.files()}
        found = catalog.suggestions_of(record.id for record in records.values())
    assert (first.tagged, first.unchanged, first.suggests) == (4, 0, "categories")
    assert (again.tagged, again.unchanged) == (0, 4)
    # Without a list: the 82 categories, each by its CatID short form.
    assert_suggested(found, records, CATEGORY_SHORTS)
    # Apart from what the file says of itself: the UCS name's own CatID is untouched.
    assert records["DOORWood_Creaky door_CLPX_Test.wav"].ucs_cat_id == "DOORWood"

    # With a list: a new vocabulary, so every file is tagged again, with the list's CatIDs.
    listed = dataclasses.replace(settings, ucs_list=str(write_list(tmp_path / "ucs.csv")))
    with Library(listed, encoder=tiny_encoder) as library:
        with_list = tag_library(library)
        found = library.catalog.suggestions_of(record.id for record in records.values())
    assert (with_list.tagged, with_list.unchanged, with_list.suggests) == (4, 0, "subcategories")
    assert_suggested(found, records, {row[0] for row in MADE_UP_LIST})

    # A new file, and one changed (embedded again): those two alone are tagged again.
    sox_tone(tmp_path / "library" / "new.wav", 2, tone="sawtooth 900")
    sox_tone(files["tone"], 4, tone="sine 300")
    index_into(listed, [tmp_path / "library"], encoder=tiny_encoder)
    with Library(listed, encoder=tiny_encoder) as library:
        third = tag_library(library)
    assert (third.tagged, third.unchanged) == (2, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_category_filter_with_suggested_finds_what_the_tagger_suggests_first(tmp_path, backend, tiny_weights,
                                                                                tiny_encoder):
    files = make_library(tmp_path / "library")
    settings = settings_for(tmp_path, backend, tiny_weights, write_list(tmp_path / "ucs.csv"))
    index_into(settings, [tmp_path / "library"], encoder=tiny_encoder)
    with Library(settings, encoder=tiny_encoder) as library:
        tag_library(library)
        record = library.catalog.file(str(files["esc0"]))
        best, _ = library.catalog.suggestions_of([record.id])[record.id].ucs[0]
        entry = next(entry for entry in ucs.load_list(settings.ucs_list) if entry.cat_id == best)
        short = entry.short

    def found(*categories: str, suggested: bool) -> set[str]:
        with searching(settings, encoder=tiny_encoder) as searcher:
            hits = searcher.search(None, filters=Filters(categories=categories, suggested=suggested)).hits
        return {Path(hit.path).name for hit in hits}

    assert files["esc0"].name in found(best, suggested=True)
    assert files["esc0"].name in found(short, suggested=True)
    assert files["esc0"].name not in found(best, suggested=False)
    # Hits carry the suggestions, as suggestions.
    with searching(settings, encoder=tiny_encoder) as searcher:
        hit = next(hit for hit in searcher.search(None, filters=Filters(categories=(best,), suggested=True)).hits
                   if hit.path == str(files["esc0"]))
    assert hit.suggested[0][0] == best and hit.ucs_cat_id is None and hit.to_dict()["suggested"][0]["cat_id"] == best
    assert {tag["group"] for tag in hit.to_dict()["suggested_tags"]} == set(DESCRIPTORS)

    # Keywords too: a word naming the suggested subcategory finds the file, with --suggested alone.
    word = entry.subcategory.lower()

    def keyword_found(suggested: bool) -> set[str]:
        with searching(settings, encoder=tiny_encoder) as searcher:
            hits = searcher.search(None, keywords_text=word, filters=Filters(suggested=suggested)).hits
        return {Path(hit.path).name for hit in hits}

    assert files["esc0"].name in keyword_found(True)
    assert files["esc0"].name not in keyword_found(False)

    # A CatID a person accepted counts too, under its own category.
    with Library(settings, encoder=tiny_encoder) as library:
        assert library.catalog.accept_suggestion(record.id, "GLASClinkish")
        library.catalog.commit()
    assert files["esc0"].name in found("GLASS", suggested=True)
    assert files["esc0"].name not in found("GLASS", suggested=False)

    # Without the list, suggestions are categories: filters read them by category name as well.
    plain = dataclasses.replace(settings, ucs_list="")
    with Library(plain, encoder=tiny_encoder) as library:
        tag_library(library)
        assert library.catalog.accept_suggestion(record.id, None)
        library.catalog.commit()
        category, _ = library.catalog.suggestions_of([record.id])[record.id].ucs[0]
    name = ucs.category_name(category)
    assert files["esc0"].name in found(name.lower(), suggested=True)
    assert files["esc0"].name in found(category, suggested=True)
    assert files["esc0"].name not in found(name, suggested=False)


def plan_rows(plan: Path) -> list[dict]:
    with open(plan, newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_plan_is_exported_applied_without_overwriting_and_undone(tmp_path, backend, tiny_weights):
    files = make_library(tmp_path / "library")
    home = tmp_path / "home"
    catalog = ["--catalog", fresh_database()] if backend == "postgresql" else []
    assert clapdex(*catalog, "index", str(tmp_path / "library"), home=home, weights=tiny_weights).returncode == 0
    plan = tmp_path / "plan.csv"

    listed = write_list(tmp_path / "ucs.csv")
    exported = clapdex(*catalog, "tag", "--export", str(plan), "--source", "Tests", "--ucs-list", str(listed),
                       home=home, weights=tiny_weights)
    assert exported.returncode == 0, exported.stderr
    rows = {Path(row["path"]).name: row for row in plan_rows(plan)}
    # The file already UCS-named keeps its name: only the other three are planned.
    assert set(rows) == {files["esc0"].name, files["esc1"].name, "low hum.wav"}
    hum = rows["low hum.wav"]
    assert hum["new_name"] == f"{hum['cat_id']}_low hum_Unknown_Tests.wav" and 0 < float(hum["confidence"]) <= 1
    # Someone else's file already has one planned name: it must survive untouched.
    taken = files["esc1"].parent / rows[files["esc1"].name]["new_name"]
    taken.write_bytes(b"someone else's file")

    applied = clapdex(*catalog, "tag", "--apply", str(plan), "--json", home=home, weights=tiny_weights)
    assert applied.returncode == 1 and "Traceback" not in applied.stderr
    outcome = json.loads(applied.stdout)
    assert [Path(item["from"]).name for item in outcome["renamed"]] == sorted([files["esc0"].name, "low hum.wav"])
    assert outcome["skipped"] == [{"path": str(files["esc1"]),
                                   "reason": f"{taken.name} exists already; nothing overwritten"}]
    assert taken.read_bytes() == b"someone else's file" and files["esc1"].exists()
    renamed = Path(next(item["to"] for item in outcome["renamed"] if Path(item["from"]) == files["esc0"]))
    assert renamed.exists() and not files["esc0"].exists()

    # The catalog follows, with its vectors: the renamed file is found by its own sound at once,
    # and indexing again embeds nothing.
    similar = clapdex(*catalog, "search", f'"{renamed}"', "--top", "1", "--json", home=home, weights=tiny_weights)
    assert json.loads(similar.stdout)[0]["path"] == str(renamed)
    assert json.loads(similar.stdout)[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert json.loads(similar.stdout)[0]["ucs_cat_id"] == rows[files["esc0"].name]["cat_id"]
    taken.unlink()
    reindexed = clapdex(*catalog, "index", str(tmp_path / "library"), home=home, weights=tiny_weights)
    assert "0 indexed, 4 skipped unchanged, 0 moved, 0 removed" in reindexed.stdout

    undone = clapdex(*catalog, "tag", "--undo", outcome["undo_log"], home=home, weights=tiny_weights)
    assert undone.returncode == 0, undone.stderr
    assert files["esc0"].exists() and files["tone"].exists() and not renamed.exists()
    back = clapdex(*catalog, "search", f'"{files["esc0"]}"', "--top", "1", "--json", home=home, weights=tiny_weights)
    assert json.loads(back.stdout)[0]["path"] == str(files["esc0"])
    assert json.loads(back.stdout)[0]["ucs_cat_id"] is None


def test_plans_that_cannot_run_are_refused_in_one_line(tmp_path, tiny_weights):
    files = make_library(tmp_path / "library")
    home = tmp_path / "home"
    assert clapdex("index", str(tmp_path / "library"), home=home, weights=tiny_weights).returncode == 0
    no_columns = tmp_path / "columns.csv"
    no_columns.write_text("file,name\na,b\n")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\x00" * 10)

    for plan, said in ((no_columns, "has no path or new_name column"), (binary, "is not a CSV plan")):
        result = clapdex("tag", "--apply", str(plan), home=home, weights=tiny_weights)
        assert result.returncode == 2 and said in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    missing = clapdex("tag", "--apply", str(tmp_path / "nowhere.csv"), home=home, weights=tiny_weights)
    assert missing.returncode == 2 and "is not an existing file" in missing.stderr
    both = clapdex("tag", "--apply", str(no_columns), "--undo", str(no_columns), home=home, weights=tiny_weights)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    alone = clapdex("search", "rain", "--suggested", home=home, weights=tiny_weights)
    assert alone.returncode == 2 and "--suggested goes with --category or --keywords" in alone.stderr
    creator = clapdex("tag", "--export", str(tmp_path / "p.csv"), "--creator", "A_B", home=home, weights=tiny_weights)
    assert creator.returncode == 2 and "--creator" in creator.stderr and "Traceback" not in creator.stderr
    # A plan names CatIDs, so it needs the list; a list missing a column the tagger needs is refused.
    unlisted = clapdex("tag", "--export", str(tmp_path / "p.csv"), home=home, weights=tiny_weights)
    assert unlisted.returncode == 2 and len(unlisted.stderr.splitlines()) == 1 and "--ucs-list" in unlisted.stderr
    no_subcategory = write_list(tmp_path / "short.csv", columns=("CatID", "Category"))
    missing_list = tmp_path / "no such list.csv"
    for listed, said in ((no_subcategory, f"UCS list {no_subcategory} has no SubCategory column"),
                         (missing_list, f"UCS list {missing_list} cannot be read")):
        result = clapdex("tag", "--ucs-list", str(listed), home=home, weights=tiny_weights)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and said in result.stderr, result.stderr
    assert not (tmp_path / "p.csv").exists()
    # The home's config.toml names the list as well (a TOML literal string: the path as it is).
    (home / "config.toml").write_text(f"ucs_list = '{no_subcategory}'\n")
    configured = clapdex("tag", home=home, weights=tiny_weights)
    assert configured.returncode == 2 and "has no SubCategory column" in configured.stderr
    (home / "config.toml").unlink()

    # Rows are checked one by one: each refused, nothing renamed, every file where it was.
    rows = tmp_path / "rows.csv"
    rows.write_text("path,new_name\n"
                    f"{files['tone']},../escaped.wav\n"
                    f"{tmp_path / 'not catalogued.wav'},x.wav\n"
                    f"{files['esc0']},\n"
                    f"{files['ucs']},{files['ucs'].name}\n")
    sox_tone(tmp_path / "not catalogued.wav", 1)
    result = clapdex("tag", "--apply", str(rows), "--json", home=home, weights=tiny_weights)
    outcome = json.loads(result.stdout)
    assert result.returncode == 1 and outcome["renamed"] == [] and outcome["undo_log"] is None
    assert [reason for _, reason in map(dict.values, outcome["skipped"])] == [
        "new_name '../escaped.wav' must be a file name, not a path (renames stay in their folder)",
        "not in the catalog", "a row needs both a path and a new_name", "already so named"]
    assert all(path.exists() for path in files.values())


def test_a_catalog_made_before_the_tagger_is_searched_with_suggested_as_without(tmp_path, tiny_weights, tiny_encoder):
    from sqlalchemy import create_engine, text

    files = make_library(tmp_path / "library")
    settings = settings_for(tmp_path, "sqlite", tiny_weights)
    index_into(settings, [tmp_path / "library"], encoder=tiny_encoder)
    engine = create_engine(settings.catalog_url)
    with engine.begin() as connection:  # as an older clapdex left it
        connection.execute(text("DROP TABLE suggestions"))
        connection.execute(text("DROP TABLE taggings"))
    engine.dispose()

    with searching(settings, encoder=tiny_encoder) as searcher:
        hits = searcher.search(None, filters=Filters(categories=("DOORS",), suggested=True)).hits
        worded = searcher.search(None, keywords_text="creaky", filters=Filters(suggested=True)).hits
    assert [Path(hit.path) for hit in hits] == [files["ucs"]] and hits[0].suggested == ()
    assert [Path(hit.path) for hit in worded] == [files["ucs"]]
    # `clapdex tag` makes the tables it needs; without a list it says, the first time, what it suggests.
    first = clapdex("tag", home=tmp_path / "home", weights=tiny_weights)
    assert first.stdout.startswith("4 tagged, 0 unchanged")
    told = [line for line in first.stderr.splitlines() if "only UCS categories are suggested" in line]
    assert len(told) == 1 and "--ucs-list" in told[0]
    sox_tone(tmp_path / "library" / "new.wav", 2, tone="sawtooth 900")
    assert clapdex("index", str(tmp_path / "library"), home=tmp_path / "home", weights=tiny_weights).returncode == 0
    second = clapdex("tag", home=tmp_path / "home", weights=tiny_weights)
    assert second.stdout.startswith("1 tagged, 4 unchanged") and "only UCS categories" not in second.stderr
