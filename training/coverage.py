"""How well a corpus covers everyday groups of sounds, by the words of its captions.

    python -m training.coverage MANIFEST [--before MANIFEST]

Prints a Markdown table: per group, the clips and minutes of MANIFEST (with ``--before``, only
its clips that the earlier corpus lacks, beside the earlier corpus's own count), and the
licences and packages they come from. The groups follow the everyday categories of the UCS list
(human non-speech, animals, aircraft, vehicles, tools, clocks, household, weather) and are
matched on caption words only, so they show what a caption promises, not what a clip sounds
like; a clip can fall in several groups or none. Nothing here names an evaluation class list.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

# (group, regular expression on the lower-case caption)
GROUPS = (
    ("human vocal non-speech", r"sneez|cough|laugh|giggl|snicker|\bcry|crying|\bsob|scream|yell|shout|breath|sigh|"
                               r"snor|yawn|hiccup|burp|puke|vomit|gasp|kiss|slurp|applau|cheer|party noise|finger snap|whistl"),
    ("babies and children", r"\bbaby|infant|\bkid|child"),
    ("tools and machinery", r"chainsaw|\bsaw|drill|hammer|grind|sander|jackhammer|compressor|mower|vacuum|sewing|"
                            r"machine|lumberjack|smith|stonemason|welding|windmill|\bfan\b"),
    ("animals", r"\bdog|bark|\bcat\b|kitten|meow|purr|\bcow|\bmoo|horse|neigh|gallop|sheep|goat|\bpig|chicken|\bhen\b|"
                r"rooster|\bcrow|duck|goose|bird|\bowl|frog|cricket|\bbee|insect|wolf|howl|monkey|\brat\b|mouse|"
                r"sea lion|wasp|canary|hawk"),
    ("aircraft", r"helicop|rotor|aircraft|airplane|plane\b|\bjet|propell|\bprop\b|turbine|turbojet|turboprop|glider"),
    ("road and rail vehicles", r"\bcar\b|\bcars\b|truck|\btank|motorcycle|\btrain|tires?|klaxon|\bhorn|siren|engine|"
                               r"vehicle|brake|skid"),
    ("clocks and mechanisms", r"clock|\btick|tock|cuckoo|chime|bell|alarm|ratchet|gear|lever|switch|\block\b|latch|"
                              r"\bkeys?\b|spring"),
    ("household", r"door|drawer|window|toilet|flush|kettle|phone|typing|keyboard|glass|cup|plate|cutlery|pour|"
                  r"water running|drip|doorbell|compartment|paper|zip"),
    ("weather and nature", r"\brain|thunder|storm|\bwind|hail|\bsnow|wave|\bsea\b|ocean|surf|river|stream|bubbl|water|"
                           r"\bfire|crackl|forest|swamp"),
)


def groups_of(caption: str) -> list[str]:
    text = caption.lower()
    return [name for name, pattern in GROUPS if re.search(pattern, text)]


def read_rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


def coverage(rows: list[dict]) -> dict[str, dict]:
    """Per group: clips, seconds, and Counters of licences and packages."""
    found = {name: {"clips": 0, "seconds": 0.0, "licences": collections.Counter(), "packages": collections.Counter()}
             for name, _ in GROUPS}
    for row in rows:
        for name in groups_of(row["caption"]):
            group = found[name]
            group["clips"] += 1
            group["seconds"] += float(row.get("duration", 0.0))
            group["licences"][row.get("licence", "unknown")] += 1
            group["packages"][row.get("source", "?").split("@")[0]] += 1
    return found


def table(rows: list[dict], before: list[dict] | None = None) -> str:
    """The Markdown table of ``coverage``: the 4 commonest licences and 5 commonest packages a group."""
    def most(counter, top):
        return ", ".join(f"{key} {count}" for key, count in counter.most_common(top))

    earlier = {row["audio"] for row in before} if before is not None else set()
    counted = coverage([row for row in rows if row["audio"] not in earlier])
    lines = []
    if before is not None:
        had = coverage(before)
        lines += ["| group | clips before | clips added | minutes added | licences | packages |",
                  "| --- | ---: | ---: | ---: | --- | --- |"]
        lines += [f"| {name} | {had[name]['clips']} | {g['clips']} | {g['seconds'] / 60:.1f} | {most(g['licences'], 4)} "
                  f"| {most(g['packages'], 5)} |" for name, g in counted.items()]
    else:
        lines += ["| group | clips | minutes | licences | packages |", "| --- | ---: | ---: | --- | --- |"]
        lines += [f"| {name} | {g['clips']} | {g['seconds'] / 60:.1f} | {most(g['licences'], 4)} | {most(g['packages'], 5)} |"
                  for name, g in counted.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.coverage", description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="a corpus manifest.jsonl")
    parser.add_argument("--before", type=Path, help="an earlier corpus's manifest: count only the clips it lacks")
    args = parser.parse_args(argv)
    try:
        rows = read_rows(args.manifest)
        before = read_rows(args.before) if args.before else None
        print(table(rows, before))
    except (OSError, json.JSONDecodeError) as error:
        parser.error(f"cannot read the manifest: {error}")
    except KeyError as error:
        parser.error(f"a manifest row has no {error} field")
    return 0


if __name__ == "__main__":
    sys.exit(main())
