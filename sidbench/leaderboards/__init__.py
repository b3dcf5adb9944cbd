"""Versioned leaderboards: tables of result records, released as immutable versions.

`leaderboards/<suite>/vMAJOR.MINOR.PATCH/` holds the records that built a table
(`records/*.json`), the table (`table.csv`, `table.md`) and `manifest.json` with the sha256 of
every file, chained to the previous version's manifest; `<suite>/CHANGELOG.md` lists the
versions. MAJOR: a protocol (or the suite) changed major version, so numbers are no longer
comparable and the table starts over; MINOR: rows added; PATCH: rows replaced by fixed
records. A released version is never edited: `add` writes the next one, and any change to a
released file is caught by its manifest (`verify`, and tests/test_leaderboards.py).

Modules: `versions` (semantic versions), `manifest` (hashes), `table` (pandas tables, sorting by
the headline metric's direction), `store` (the folder layout, add and show), `published`
(published numbers with citations, from leaderboards/published.yaml).
"""
